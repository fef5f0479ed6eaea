"""``pricewave serve`` through the real CLI: a subprocess on a free port, read over HTTP, stopped with Ctrl-C."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from pricewave.config import load_settings
from pricewave.feature_store import open_store
from pricewave.privacy import pseudonymize_user
from pricewave.stack.process import child_environment
from tests.pricewave.commands.test_price import SECRET, pricewave
from tests.pricewave.test_serving import SHOPPER, seed


def test_help_explains_the_endpoints() -> None:
    result = pricewave("serve", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for phrase in ("GET /price", "POST /prices", "/health", "/metrics", "/docs", "pseudonymized", "--channel"):
        assert phrase in text, phrase


def test_a_taken_port_is_one_readable_line(feature_repo_copy: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = pricewave("serve", "--port", str(port), "--repo", str(feature_repo_copy), "--profile", "sqlite")
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0 and "choose another --port" in result.stderr, result.stderr


@contextmanager
def serving(*args: str, env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``pricewave serve --port 0 ARGS`` as a subprocess: (process, base url); Ctrl-C when done."""
    command = [sys.executable, "-m", "pricewave", "serve", "--port", "0", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        found = re.search(r"on (http://\S+)", banner)
        assert found, f"no address in {banner!r}; stderr: {process.stderr.read() if process.poll() is not None else ''}"
        yield process, found.group(1)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                raise


def test_started_while_redis_is_down_it_serves_and_says_so_on_health(feature_repo_copy: Path) -> None:
    from tests.reliability.harness import free_port

    env = child_environment({"PRICEWAVE_USER_KEY_SECRET": SECRET, "PRICEWAVE_REDIS__PORT": str(free_port())})
    with serving("--repo", str(feature_repo_copy), "--profile", "redis", env=env) as (_, url):
        health = requests.get(f"{url}/health", timeout=30)
        assert health.status_code == 503 and "Redis" in health.json()["error"], health.text


@pytest.mark.integration
def test_serve_answers_over_http_and_stops_on_ctrl_c(feature_repo_copy: Path) -> None:
    env = child_environment({"PRICEWAVE_USER_KEY_SECRET": SECRET})
    store = open_store(load_settings(env=env), repo_path=str(feature_repo_copy), profile="sqlite")
    seed(store, pseudonymize_user(SHOPPER, SECRET.encode()))
    with serving("--repo", str(feature_repo_copy), env=env) as (process, url):
        quote = requests.get(f"{url}/price", params={"sku": "FRESH-1", "user": SHOPPER}, timeout=30).json()
        assert (quote["price"], quote["source"], quote["personalized"]) == (16.0, "offer", True)
        assert requests.get(f"{url}/health", timeout=10).json()["online_store"] == "sqlite"
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""

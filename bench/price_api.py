"""The channels' price API under concurrent load: ``pricewave serve`` beside ``feast serve``, same store.

Everything runs on a private, freshly applied copy of ``feature_repo/`` and, for Redis, a private
``redis-server`` on a free port (password set). The store holds a fresh catalog row and sku price for
every sku and a fresh personalized offer for a share of (shopper, sku) pairs. For each store, in
one run:

* ``pricewave serve`` (the real CLI, a subprocess): ``GET /price?sku=&user=&channel=checkout_pricing``
  with a raw shopper id, so each request is pseudonymized, read (offer, sku price, base price) and
  judged for freshness and disclosure;
* ``feast serve`` (the real CLI, a subprocess): ``POST /get-online-features`` for the same feature
  service and the same (sku, user key), which returns the raw features with no fallback or
  freshness (what a channel would get without pricewave).

Each cell runs ``--duration`` seconds with ``C`` client threads, each with a keep-alive session,
asking for random (sku, shopper) pairs; the table shows requests/s, p50, p99 and errors. The client
runs on the same machine, so requests/s is a floor of what the server alone could do; both servers
face the same client in the same run.

Usage::

    .venv/bin/python bench/price_api.py                 # 15 s cells, 1/8/32 clients (about 4 minutes)
    .venv/bin/python bench/price_api.py --tiny          # seconds, for CI

Prints the table and a final JSON line.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import benchlib

from pricewave.config import load_settings
from pricewave.privacy import pseudonymize_user

CHANNEL = "checkout_pricing"
OFFER_SHARE = 0.3  # share of (shopper, sku) pairs with a personalized offer


def seed_store(store: Any, n_skus: int, n_users: int, secret: bytes) -> tuple[list[str], list[str]]:
    """Fresh catalog rows, sku prices and offers; returns (skus, raw shopper ids)."""
    from pricewave.feature_store import FeatureWriter

    now_ms = int(time.time() * 1000)
    rng = random.Random(0)
    skus = [f"SKU-{n:05d}" for n in range(n_skus)]
    users = [f"bench-shopper-{n}" for n in range(n_users)]
    writer = FeatureWriter(store)
    writer.write("sku_catalog", benchlib.SyntheticMarket(n_skus=n_skus, n_users=1).catalog_rows(now_ms - 60_000))

    def decision(sku: str, user_key: str | None, price: float) -> dict[str, Any]:
        return {
            "decision_id": f"{sku}-{user_key}", "kind": "offer" if user_key else "sku", "sku": sku,
            "user_key": user_key, "price": price, "base_price": 20.0, "guardrail": None, "guardrails": [],
            "model_version": "bench", "propensity": 1.0, "personalized": user_key is not None,
            "decision_time": now_ms, "event_time": now_ms,
        }  # fmt: skip

    writer.write("sku_price", [decision(sku, None, 19.0) for sku in skus])
    offers = [
        decision(sku, pseudonymize_user(user, secret), 17.0)
        for user in users
        for sku in skus
        if rng.random() < OFFER_SHARE
    ]
    writer.write("user_offer", offers)
    return skus, users


def start_pricewave_serve(repo: Path, profile: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """``pricewave serve`` (the CLI) on a free port; returns (process, base url) once it listens."""
    command = [sys.executable, "-m", "pricewave", "serve", "--port", "0", "--repo", str(repo), "--profile", profile]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert process.stdout is not None
    banner = process.stdout.readline()
    found = re.search(r"on (http://\S+)", banner)
    if not found:
        process.kill()
        raise RuntimeError(f"pricewave serve did not start: {banner!r}")
    return process, found.group(1)


def pricewave_request(url: str, skus: list[str], users: list[str]) -> Callable[[Any, random.Random], Any]:
    """A request to ``pricewave serve`` for a random (sku, raw shopper id)."""

    def ask(session: Any, rng: random.Random) -> Any:
        params = {"sku": rng.choice(skus), "user": rng.choice(users), "channel": CHANNEL}
        return session.get(url + "/price", params=params, timeout=10)

    return ask


def feast_request(url: str, skus: list[str], user_keys: list[str]) -> Callable[[Any, random.Random], Any]:
    """The same read from ``feast serve``: the channel's feature service for a random (sku, user key)."""

    def ask(session: Any, rng: random.Random) -> Any:
        entities = {"sku": [rng.choice(skus)], "user_key": [rng.choice(user_keys)]}
        # Full names: the service's offer and sku price views share field names.
        body = {"feature_service": CHANNEL, "entities": entities, "full_feature_names": True}
        return session.post(url + "/get-online-features", json=body, timeout=10)

    return ask


def load(request: Callable[[Any, random.Random], Any], clients: int, duration_s: float) -> dict[str, Any]:
    """``clients`` threads call ``request(session, rng)`` for ``duration_s``; latency figures and errors."""
    import requests

    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(n: int) -> None:
        session, rng = requests.Session(), random.Random(n)
        request(session, rng)  # warm the connection
        start.wait()
        while time.perf_counter() < deadline[0]:
            began = time.perf_counter()
            try:
                response = request(session, rng)
                ok = response.status_code == 200
            except requests.RequestException:
                ok = False
            latencies[n].append((time.perf_counter() - began) * 1000)
            errors[n] += 0 if ok else 1

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()  # the clients start with the barrier, just after this
    deadline[0] = began + duration_s
    start.wait()
    for thread in threads:
        thread.join(timeout=duration_s + 60)
    wall = time.perf_counter() - began
    values = [value for per_client in latencies for value in per_client]
    return {
        "requests": len(values),
        "requests_per_s": len(values) / wall,
        "p50_ms": benchlib.percentile(values, 50),
        "p99_ms": benchlib.percentile(values, 99),
        "errors": sum(errors),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tiny", action="store_true", help="2 s cells, 4 clients, 50 skus (CI smoke test)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per cell (default 15; tiny 2)")
    parser.add_argument("--clients", default=None, help="client thread counts, comma-separated (default 1,8,32)")
    parser.add_argument("--skus", type=int, default=None, help="skus in the store (default 1,000; tiny 50)")
    parser.add_argument("--users", type=int, default=None, help="shoppers (default 200; tiny 20)")
    args = parser.parse_args(argv)
    duration = args.duration or (2.0 if args.tiny else 15.0)
    clients = [int(c) for c in (args.clients or ("4" if args.tiny else "1,8,32")).split(",")]
    n_skus = args.skus or (50 if args.tiny else 1_000)
    n_users = args.users or (20 if args.tiny else 200)
    if duration <= 0 or min(clients) < 1 or n_skus < 1 or n_users < 1:
        parser.error("--duration, --clients, --skus and --users must be positive")
    info = benchlib.banner("price_api")
    print(f"{n_skus:,} skus, {n_users:,} shoppers, offers for {OFFER_SHARE:.0%} of pairs; channel {CHANNEL}; "
          f"{duration:g} s per cell; clients {clients}\n")  # fmt: skip
    import requests

    from pricewave.feature_store import open_store
    from pricewave.feature_store.store import PROFILE_ENV, feast_environment

    rows, report = [], {}
    with tempfile.TemporaryDirectory(prefix="bench-api-") as workdir, benchlib.redis_server() as (host, port, pw):
        repo = benchlib.applied_feature_repo(Path(workdir))
        os.environ["PRICEWAVE_REDIS__HOST"], os.environ["PRICEWAVE_REDIS__PORT"] = host, str(port)
        os.environ["PRICEWAVE_REDIS_PASSWORD"] = pw
        settings = load_settings()
        secret = settings.user_key_secret
        for profile in ("sqlite", "redis"):
            store = open_store(settings, repo_path=repo, profile=profile)
            skus, users = seed_store(store, n_skus, n_users, secret)
            keys = {user: pseudonymize_user(user, secret) for user in users}
            env = {
                **feast_environment(settings),
                PROFILE_ENV: str(repo / f"feature_store{'' if profile == 'sqlite' else '.redis'}.yaml"),
            }
            ours, ours_url = start_pricewave_serve(repo, profile, env)
            feast, feast_url = benchlib.start_feast_serve(repo, env)
            try:
                ask_pricewave = pricewave_request(ours_url, skus, users)
                ask_feast = feast_request(feast_url, skus, [keys[user] for user in users])
                for ask in (ask_pricewave, ask_feast):
                    sample = ask(requests.Session(), random.Random(1))
                    assert sample.status_code == 200, sample.text[:500]
                for count in clients:
                    for server, ask in (("pricewave serve GET /price", ask_pricewave),
                                        ("feast serve /get-online-features", ask_feast)):  # fmt: skip
                        figures = load(ask, count, duration)
                        rows.append([profile, server, count, figures["requests"], figures["requests_per_s"],
                                     figures["p50_ms"], figures["p99_ms"], figures["errors"],
                                     benchlib.load_average()])  # fmt: skip
                        report[f"{profile} {server} c{count}"] = figures
            finally:
                benchlib.stop_process(ours)
                benchlib.stop_process(feast)
    print("one price per request, keep-alive clients on the same machine")
    benchlib.table(["store", "server", "clients", "requests", "req/s", "p50 ms", "p99 ms", "errors", "load avg"], rows)
    ratios = {}
    for profile in ("sqlite", "redis"):
        for count in clients:
            ours = report[f"{profile} pricewave serve GET /price c{count}"]["requests_per_s"]
            theirs = report[f"{profile} feast serve /get-online-features c{count}"]["requests_per_s"]
            ratios[f"{profile} c{count}"] = ours / theirs
    print("\nreq/s, pricewave serve / feast serve: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    result = {"bench": "price_api", "date": info["date"], "cells": report, "ratios": ratios}
    benchlib.emit(result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])

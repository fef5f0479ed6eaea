"""The local stack's Redis: persistent, and its password never on a command line."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from pricewave.config import load_settings
from pricewave.stack import redis as stack_redis


def test_redis_persists_and_keeps_its_password_out_of_argv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRICEWAVE_REDIS_PASSWORD", 'pa"ss\\word')
    service = stack_redis.RedisService(load_settings(env={"PRICEWAVE_STATE_DIR": str(tmp_path)}))
    started: list[list[str]] = []
    monkeypatch.setattr(stack_redis, "ensure_redis_server", lambda: "/usr/bin/redis-server")
    monkeypatch.setattr(stack_redis, "start_detached", lambda command, **_: started.append(command))
    service.start_process("redis")
    assert len(started) == 1 and not any("pa" in part and "word" in part for part in started[0])
    config = Path(started[0][1])
    text = config.read_text()
    assert "appendonly yes" in text and "appendonly no" not in text
    assert 'requirepass "pa\\"ss\\\\word"' in text
    assert stat.S_IMODE(config.stat().st_mode) == 0o600

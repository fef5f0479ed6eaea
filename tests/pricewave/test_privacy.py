"""Keyed-hash user keys."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pricewave.privacy import is_user_key, pseudonymize_user


@given(st.text(min_size=1, max_size=64))
def test_user_key_is_stable_keyed_and_opaque(raw_id: str) -> None:
    key = pseudonymize_user(raw_id, b"secret-a")
    assert key == pseudonymize_user(raw_id, b"secret-a")
    assert key != pseudonymize_user(raw_id, b"secret-b")
    assert is_user_key(key)
    assert raw_id not in key or len(raw_id) < 4

"""Pseudonymous user keys: raw user ids never leave the producer.

A user key is the hex HMAC-SHA256 of the raw id under a secret key, truncated to 32 hex
characters (128 bits): stable for joins and windows, useless for re-identification without the
secret.

Example:
    >>> key = pseudonymize_user("customer-42", secret=b"k")
    >>> len(key), key == pseudonymize_user("customer-42", secret=b"k")
    (32, True)
    >>> is_user_key(key), is_user_key("customer-42")
    (True, False)
"""

from __future__ import annotations

import hashlib
import hmac
import re

USER_KEY_LENGTH = 32
USER_KEY_PATTERN = re.compile(r"^[0-9a-f]{32}$")

# Columns that must never become model inputs (see DESIGN.md "Privacy").
PROTECTED_ATTRIBUTES = frozenset(
    {"age", "age_group", "gender", "sex", "race", "ethnicity", "religion", "pin_code", "zip"}
)


def pseudonymize_user(raw_user_id: str, secret: bytes) -> str:
    """Return the keyed-hash user key for a raw user id."""
    digest = hmac.new(secret, raw_user_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return digest[:USER_KEY_LENGTH]


def is_user_key(value: str) -> bool:
    """True when ``value`` has the shape of a pseudonymous user key."""
    return bool(USER_KEY_PATTERN.match(value))

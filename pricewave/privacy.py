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

import contextlib
import hashlib
import hmac
import json
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


def resolve_user_key(
    user: str | None, user_key: str | None, secret: bytes, *, names: tuple[str, str] = ("user", "user_key")
) -> str | None:
    """The pseudonymous key to look a shopper up by: ``user`` hashed with ``secret``, or ``user_key``.

    Args:
        user: The shopper's raw id (hashed here, never passed on).
        user_key: An already pseudonymous key.
        secret: The user-key secret.
        names: How the caller calls the two inputs, for the error (e.g. ``("--user", "--user-key")``).

    Raises:
        ConfigError: Both were given, or ``user_key`` is not a pseudonymous key.

    Example:
        >>> resolve_user_key(None, None, b"k") is None
        True
        >>> len(resolve_user_key("alice", None, b"k"))
        32
    """
    from pricewave.errors import ConfigError

    user_name, key_name = names
    if user is not None and user_key is not None:
        raise ConfigError(f"give either {user_name} (a raw id) or {key_name} (a pseudonymous key), not both")
    if user is not None:
        return pseudonymize_user(user, secret)
    if user_key is not None and not is_user_key(user_key):
        raise ConfigError(f"{key_name} must be a 32-hex pseudonymous key; pass a raw id with {user_name} instead")
    return user_key


# Field names that hold a user's identity: user_key, user_id, userId, raw_user_id, customer, email...
RAW_ID_FIELD_PATTERN = re.compile(
    r"(?i)^(?:raw[_-]?)?(?:user|customer|client|shopper|member|buyer|visitor|account)"
    r"(?:[_-]?(?:id|key|name|email|mail|number|no|ref))?$|^(?:e[_-]?mail(?:[_-]?address)?|uid)$"
)
# A JSON member in the raw bytes: "name": "string" (closed, or cut off by the end of the bytes) or
# "name": number/true/false. Byte-level, so it also works on records that are not valid JSON.
_MEMBER = re.compile(
    rb'"(?P<name>[A-Za-z0-9_\-]{1,64})"(?P<sep>\s*:\s*)'
    rb'(?:"(?P<text>(?:[^"\\]|\\.)*)(?P<end>"|\\?\Z)|(?P<bare>-?[0-9][0-9.eE+\-]*|true|false))'
)
# The same one level down, inside a JSON string that holds JSON (quotes escaped as \").
_ESCAPED_MEMBER = re.compile(
    rb'(?P<q>\\+)"(?P<name>[A-Za-z0-9_\-]{1,64})(?P=q)"(?P<sep>\s*:\s*)'
    rb'(?:(?P=q)"(?P<text>[^"\\]*)(?P=q)"|(?P<bare>-?[0-9][0-9.eE+\-]*|true|false))'
)
_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)


def is_raw_id_field(name: str) -> bool:
    """True when a field of this name holds a user's identity (a user key or a raw id).

    Example:
        >>> [is_raw_id_field(n) for n in ("user_key", "userId", "raw_user_id", "email", "sku", "session_id")]
        [True, True, True, True, False, False]
    """
    return bool(RAW_ID_FIELD_PATTERN.match(name))


def pseudonymize_raw_ids(raw: bytes, secret: bytes) -> tuple[bytes, list[str]]:
    """Replace every raw user id in a record's bytes by its keyed pseudonym, keeping all else.

    A member whose name is a user field (:func:`is_raw_id_field`) and whose value is not already a
    pseudonymous key gets ``pseudonymize_user(value, secret)`` as its (string) value. The bytes need
    not be valid JSON: a truncated record, one with a bad byte elsewhere, JSON held in a JSON string
    (one level of escaping) and UTF-16/32 with a byte order mark are covered. Everything outside the
    replaced values stays byte for byte. Not covered: a raw id under another name (``session_id``),
    in free text, or nested in an object (``"user": {"id": ...}``).

    Args:
        raw: The record value as received.
        secret: The user-key HMAC secret (``Settings.user_key_secret``).

    Returns:
        The bytes to keep, and the names of the fields replaced (empty: the bytes are unchanged).

    Example:
        >>> kept, fields = pseudonymize_raw_ids(b'{"user_id":"customer-42","sku":"A"', b"k")
        >>> kept == b'{"user_id":"' + pseudonymize_user("customer-42", b"k").encode() + b'","sku":"A"', fields
        (True, ['user_id'])
        >>> pseudonymize_raw_ids(b'{"user_key":"0123456789abcdef0123456789abcdef"}', b"k")[1]
        []
    """
    for bom, codec in _BOMS:
        if raw.startswith(bom):
            try:
                text = raw.decode(codec)
            except UnicodeDecodeError:
                break
            inner, replaced = pseudonymize_raw_ids(text.encode("utf-8", "surrogatepass"), secret)
            if not replaced:
                return raw, []
            return inner.decode("utf-8", "surrogatepass").encode(codec), replaced
    if b'"' not in raw:
        return raw, []
    fields: list[str] = []

    def replace(match: re.Match[bytes], quote: bytes) -> bytes:
        name = match["name"].decode("ascii")
        value = match["text"] if match["text"] is not None else match["bare"]
        if not is_raw_id_field(name) or value is None:
            return match[0]
        text = value.decode("utf-8", "replace")
        if match["text"] is not None and not quote:
            with contextlib.suppress(ValueError):  # a cut-off or broken escape: hash the bytes as they are
                text = json.loads(b'"' + value + b'"')
        if is_user_key(text):
            return match[0]
        fields.append(name)
        key = pseudonymize_user(text, secret).encode()
        return quote + b'"' + match["name"] + quote + b'"' + match["sep"] + quote + b'"' + key + quote + b'"'

    kept = _MEMBER.sub(lambda m: replace(m, b""), raw)
    if b'\\"' in kept:
        kept = _ESCAPED_MEMBER.sub(lambda m: replace(m, m["q"]), kept)
    return kept, fields

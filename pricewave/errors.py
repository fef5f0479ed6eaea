"""Errors a user can act on. The CLI prints their message on one line and exits non-zero."""

from __future__ import annotations


class PricewaveError(Exception):
    """Base class: an error whose message tells the user what is wrong and what to do."""

    exit_code = 2


class ConfigError(PricewaveError):
    """A config file, environment variable or CLI argument is invalid."""


class StackError(PricewaveError):
    """A local service could not be installed, started or reached."""

    exit_code = 3


class StoreBusyError(StackError):
    """The online store is busy for now (another writer holds SQLite's lock): worth another try."""


class SchemaError(PricewaveError):
    """A schema file is missing or malformed (not a bad event: those are rejected records)."""


class DataError(PricewaveError):
    """An input data set is missing or malformed."""

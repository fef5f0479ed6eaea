"""Validation of raw Kafka values against ``schemas/``, as a pandas UDF on Arrow batches.

The job reads each topic as raw bytes, so nothing can fail deserialization inside the source:
this UDF gives each record's rejection reason (NULL when valid) with the same checker and the same
reasons as :func:`pricewave.schemas.check_event`. Invalid records then go to the dead-letter topic
with their raw bytes; valid ones are typed by Flink SQL's ``JSON_VALUE`` on the Java side.

Example:
    >>> import pandas as pd
    >>> EventValidator("competitor_price").reasons(pd.Series([b"{}"])).tolist()
    ['missing_field: event_id']
    >>> raw = b'{"event_id":"e","sku":"A","competitor":"c","price":2.5,"in_stock":true,"event_time":1767225600000}'
    >>> EventValidator("competitor_price").reasons(pd.Series([raw, raw]), pd.Series([False, True])).tolist()
    [None, 'late']
    >>> EventValidator("review").reasons(pd.Series([b'{"heartbeat":"simulator","event_time":1767225600000}'])).tolist()
    ['heartbeat']
"""

from __future__ import annotations

import pandas as pd
from pyflink.table import DataTypes
from pyflink.table.udf import ScalarFunction, UserDefinedFunctionWrapper, udf

from pricewave.schemas import DEFAULT_INPUT_CLOCK_SKEW_S, HEARTBEAT, check_event, load_schema
from udfs.metrics import metric_group


class EventValidator(ScalarFunction):
    """``reason(raw BYTES, unstamped BOOLEAN) -> STRING``: NULL for a valid record.

    The schema's reason comes first; a valid record the source gave no event time (further ahead of
    the job's clock than ``max_clock_skew_s``) gets :meth:`unstamped_reason`. A record that is not
    of the topic's schema but a valid heartbeat (``schemas/heartbeat``) gets ``heartbeat``: it has
    moved the watermark, and the job drops it (neither a feature nor a dead letter; one from a
    clock too far ahead is a ``bad_timestamp`` dead letter like any record). The job judges
    lateness after this check, per partition (:func:`pricewave.job.sources.checked_view`);
    :meth:`reasons` also takes a late flag, for callers outside the job.
    """

    def __init__(self, schema_name: str, max_clock_skew_s: float = DEFAULT_INPUT_CLOCK_SKEW_S) -> None:
        self.schema_name = schema_name
        self.max_clock_skew_s = max_clock_skew_s

    def unstamped_reason(self) -> str:
        """The reason for a schema-valid record whose event time the job's source refused."""
        return f"bad_timestamp: event_time more than {self.max_clock_skew_s:g} s ahead of the job's clock"

    def open(self, function_context: object) -> None:
        load_schema(self.schema_name)  # compile the checkers once per worker, not per batch
        load_schema(HEARTBEAT)
        # Flink metrics (REST, Web UI, Prometheus): records this check rejects. The job asks it
        # for no late verdict (that comes after it, per partition); dead letters and late ones
        # are counted where they are routed (DeadLetterPseudonymizer).
        group = metric_group(function_context, self.schema_name)
        if group is not None:
            self.rejected_counter = group.counter("invalid")
            self.heartbeat_counter = group.counter("heartbeats")

    def reasons(self, raw: pd.Series, late: pd.Series | None = None, unstamped: pd.Series | None = None) -> pd.Series:
        """The reason for each raw value (None when valid and on time)."""
        out = [check_event(self.schema_name, value if value is not None else b"")[1] for value in raw]
        out = [HEARTBEAT if reason and _is_heartbeat(value) else reason for reason, value in zip(out, raw, strict=True)]
        if unstamped is not None:
            ahead = self.unstamped_reason()
            out = [
                ahead if bad and reason in (None, HEARTBEAT) else reason
                for reason, bad in zip(out, unstamped, strict=True)
            ]
        if late is not None:
            out = [reason or ("late" if is_late else None) for reason, is_late in zip(out, late, strict=True)]
        return pd.Series(out, index=raw.index, dtype=object)

    def eval(self, raw: pd.Series, unstamped: pd.Series) -> pd.Series:
        reasons = self.reasons(raw, unstamped=unstamped)
        if hasattr(self, "rejected_counter"):
            heartbeats = int((reasons == HEARTBEAT).sum())
            self.heartbeat_counter.inc(heartbeats)
            self.rejected_counter.inc(int(reasons.notna().sum()) - heartbeats)
        return reasons


def _is_heartbeat(raw: bytes | None) -> bool:
    """Whether ``raw`` is a valid heartbeat record (asked only of records their topic's schema refused)."""
    return raw is not None and check_event(HEARTBEAT, raw)[1] is None


class DeadLetterPseudonymizer(ScalarFunction):
    """``pseudonymize_dead_letter(raw BYTES, reason STRING) -> ROW<raw BYTES, pseudonymized STRING>``.

    A buggy producer's record can carry a raw user id (``"user_key": "customer-42"``, a
    ``user_id`` field): kept as received, it would sit in the dead-letter topic for its whole
    retention. Each such value is replaced by its keyed pseudonym
    (:func:`pricewave.privacy.pseudonymize_raw_ids`), the rest of the bytes kept as they are;
    ``pseudonymized`` names the fields replaced (NULL when none).

    The user-key secret travels with the function (resolved by the submitting process, like the
    store's password in :class:`udfs.pricing._SettingsCarrier`): a TaskManager does not inherit
    the submitting shell's environment.
    """

    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def open(self, function_context: object) -> None:
        # Flink metrics: every dead letter, the late ones among them, and those with raw ids replaced.
        group = metric_group(function_context, "dead_letter")
        if group is not None:
            self.pseudonymized_counter = group.counter("pseudonymized")
            self.dead_lettered_counter = group.counter("dead_lettered")
            self.late_counter = group.counter("late")

    def pseudonymize(self, raw: pd.Series) -> pd.DataFrame:
        """The bytes to keep and the replaced fields (comma-separated, None when none) per value."""
        from pricewave.privacy import pseudonymize_raw_ids

        kept: list[bytes | None] = []
        fields: list[str | None] = []
        for value in raw:
            if value is None:
                kept.append(None)
                fields.append(None)
                continue
            new, names = pseudonymize_raw_ids(bytes(value), self.secret)
            kept.append(new)
            fields.append(",".join(dict.fromkeys(names)) or None)
        return pd.DataFrame({"raw": kept, "pseudonymized": fields}, index=raw.index)

    def eval(self, raw: pd.Series, reason: pd.Series) -> pd.DataFrame:
        out = self.pseudonymize(raw)
        if hasattr(self, "pseudonymized_counter"):
            self.pseudonymized_counter.inc(int(out["pseudonymized"].notna().sum()))
            self.dead_lettered_counter.inc(len(raw))
            self.late_counter.inc(int((reason == "late").sum()))
        return out


def dead_letter_pseudonymizer_udf(secret: bytes) -> UserDefinedFunctionWrapper:
    """The vectorized dead-letter pseudonymizer, ready to register with a TableEnvironment."""
    result = DataTypes.ROW(
        [DataTypes.FIELD("raw", DataTypes.BYTES()), DataTypes.FIELD("pseudonymized", DataTypes.STRING())]
    )
    return udf(DeadLetterPseudonymizer(secret), result_type=result, func_type="pandas")


def validator_udf(schema_name: str, max_clock_skew_s: float = DEFAULT_INPUT_CLOCK_SKEW_S) -> UserDefinedFunctionWrapper:
    """The vectorized validator of one schema, ready to register with a TableEnvironment."""
    return udf(EventValidator(schema_name, max_clock_skew_s), result_type=DataTypes.STRING(), func_type="pandas")

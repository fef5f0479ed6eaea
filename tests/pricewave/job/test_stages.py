"""The job's stages read like the data flow: every table or view is declared before anything reads it.

No JVM: the stage functions only hand SQL text to the TableEnvironment, so a recorder stands in for it
and the checks read that text. Planning the same SQL on Flink is what the pipeline tests do.
"""

from __future__ import annotations

import inspect
import itertools
import re

import pytest

from pricewave.config import Settings
from pricewave.feature_views import sku_competition, sku_demand, sku_review_summary, user_session
from pricewave.job import features, pipeline, pricing, sinks, sources
from pricewave.job.options import JobOptions

# A statement creates the table or view it names; it reads what follows FROM, JOIN or TABLE(...).
CREATES = re.compile(r"CREATE TEMPORARY (?:VIEW|TABLE) `(\w+)`")
READS = re.compile(r"(?:FROM|JOIN|TABLE)\s+`(\w+)`")
# Their FROM takes a column, not a table.
SQL_FUNCTIONS_WITH_FROM = re.compile(r"\b(?:SUBSTRING|TRIM|EXTRACT)\([^()]*\)")
INSERTS_INTO = re.compile(r"INSERT INTO `(\w+)`")
STAGE_MODULES = (sources, features, pricing, sinks)
FEATURE_VIEW_MODULES = (sku_demand, sku_competition, sku_review_summary, user_session)


def reads(statement: str) -> list[str]:
    """The tables and views a statement reads."""
    return READS.findall(SQL_FUNCTIONS_WITH_FROM.sub("", statement))


class RecordingTableEnvironment:
    """Keeps the SQL each stage declares, in order (a view registered from a query becomes its CREATE)."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def execute_sql(self, statement: str) -> None:
        self.statements.append(statement)

    def sql_query(self, query: str) -> str:
        return query

    def create_temporary_view(self, name: str, query: str) -> None:
        self.statements.append(f"CREATE TEMPORARY VIEW `{name}` AS {query}")


def declared_by_stage(settings: Settings, options: JobOptions) -> dict[str, list[str]]:
    """Each stage module's statements, stage by stage in the order build_pipeline calls them."""
    declared: dict[str, list[str]] = {}
    for module, declare in (
        (sources, lambda t_env: sources.declare_sources(t_env, settings, options)),
        (features, lambda t_env: features.declare_features(t_env, options)),
        (pricing, pricing.declare_pricing),
        (sinks, lambda t_env: sinks.declare_sinks(t_env, settings, options)),
    ):
        recorder = RecordingTableEnvironment()
        declare(recorder)  # type: ignore[no-untyped-call]
        declared[module.__name__] = recorder.statements
    return declared


@pytest.fixture
def stages() -> dict[str, list[str]]:
    return declared_by_stage(Settings(), JobOptions())


def test_every_view_is_declared_once_and_before_anything_reads_it(stages: dict[str, list[str]]) -> None:
    declared: list[str] = []
    for module_name, statements in stages.items():
        assert statements, f"{module_name} declares nothing"
        for statement in statements:
            (created,) = CREATES.findall(statement)
            unknown = [name for name in reads(statement) if name not in declared and name != created]
            assert not unknown, f"{module_name}: {created} reads {unknown} before they are declared"
            assert created not in declared, f"{created} is declared twice"
            declared.append(created)
    inserts = [sources.dead_letter_insert(Settings(), tuple(sources.INPUT_SCHEMAS)), *sinks.sink_inserts()]
    for insert in inserts:
        targets = INSERTS_INTO.findall(insert)
        assert targets and all(name in declared for name in targets + reads(insert)), insert
    # Every table and view is used: a sink is written, a view is read by a later statement or insert.
    everything_read = {name for text in (*itertools.chain(*stages.values()), *inserts) for name in reads(text)}
    written = {name for insert in inserts for name in INSERTS_INTO.findall(insert)}
    assert set(declared) == everything_read | written


def test_each_module_defines_its_views_in_the_order_it_declares_them(stages: dict[str, list[str]]) -> None:
    """Read top to bottom, a module meets a view's SQL before the SQL that reads it.

    A stage's views are written in the stage's module, or (the feature views) in their own modules of
    :mod:`pricewave.feature_views`, beside their pandas computation.
    """
    for module in STAGE_MODULES:
        where_written = [module, *(FEATURE_VIEW_MODULES if module is features else ())]
        positions: dict[str, list[int]] = {}
        for statement in stages[module.__name__]:
            (created,) = CREATES.findall(statement)
            # Where a module writes the view: its CREATE, its query (a view registered from a Table),
            # or the name handed to a helper that writes it.
            patterns = (rf"CREATE TEMPORARY (?:VIEW|TABLE) `{created}`", rf"def {created}_query\(", rf"\"{created}\"")
            for candidate in where_written:
                source = inspect.getsource(candidate)
                found = next(
                    (hits for pattern in patterns if (hits := [m.start() for m in re.finditer(pattern, source)])), []
                )
                if not found and candidate is sources:  # one per input topic: `src_<role>`, `checked_<role>`, ...
                    found = [source.index(f'quote("{created.split("_")[0]}_" + role)')]
                if found:
                    written = positions.setdefault(candidate.__name__, [])
                    if min(found) not in written:  # the next input topic's views again: written once
                        written.append(min(found))
                    break
            else:
                raise AssertionError(f"{created} is written in none of {[m.__name__ for m in where_written]}")
        for name, written in positions.items():
            assert written == sorted(written), f"{name} defines its views out of order"


def test_build_pipeline_calls_the_stages_in_data_flow_order() -> None:
    source = inspect.getsource(pipeline.build_pipeline)
    calls = [
        source.index(f"{name}(") for name in ("declare_sources", "declare_features", "declare_pricing", "declare_sinks")
    ]
    assert calls == sorted(calls)

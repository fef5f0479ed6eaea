"""The job's Java aggregates (``udfs/java``): built from source, run in Flink SQL."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pricewave.config import Settings
from pricewave.job.environment import JAVA_FUNCTIONS, register_java_functions
from pricewave.sql import epoch_millis
from pricewave.stack.jars import java_udf_jar


def test_the_jar_is_built_from_the_sources_once_and_holds_the_function(settings: Settings) -> None:
    jar = java_udf_jar(settings)
    built = jar.stat().st_mtime_ns
    assert java_udf_jar(settings) == jar and jar.stat().st_mtime_ns == built, "rebuilt with unchanged sources"
    with zipfile.ZipFile(jar) as archive:
        names = archive.namelist()
    assert all(class_name.replace(".", "/") + ".class" in names for class_name in JAVA_FUNCTIONS.values())


def minicluster(settings: Settings) -> Any:
    """A streaming TableEnvironment at parallelism 1 (a MiniCluster) with the Java functions registered."""
    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment

    config = Configuration()
    config.set_string("parallelism.default", "1")
    config.set_string("python.executable", sys.executable)
    t_env = TableEnvironment.create(
        EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(config).build()
    )
    register_java_functions(t_env, settings)
    return t_env


@pytest.mark.integration
@pytest.mark.isolated  # a MiniCluster over a local file: no shared service
@pytest.mark.timeout(180)
def test_running_mean_per_key_skips_null_vectors_and_is_null_before_any(settings: Settings, tmp_path: Path) -> None:
    # (key, time, vector): a null vector first, two vectors for a, one for b. Ordered by event time:
    # literal VALUES rows (a union of several VALUES when their types differ) may arrive in any order.
    rows = [
        ("a", 1000, None),
        ("a", 2000, [1.0, 2.0, 3.0]),
        ("b", 3000, [0.5, 0.5, 0.5]),
        ("a", 4000, [3.0, 0.0, -3.0]),
    ]
    (tmp_path / "vectors.json").write_text("".join(json.dumps({"key": k, "ms": t, "v": v}) + "\n" for k, t, v in rows))
    t_env = minicluster(settings)
    t_env.execute_sql(f"""
    CREATE TEMPORARY TABLE vectors (
      `key` STRING, `ms` BIGINT, `v` ARRAY<FLOAT>, `t` AS TO_TIMESTAMP_LTZ(`ms`, 3),
      WATERMARK FOR `t` AS `t` - INTERVAL '1' SECOND
    ) WITH ('connector' = 'filesystem', 'path' = '{tmp_path / "vectors.json"}', 'format' = 'json')""")
    query = """
    SELECT `key`, `ms`, mean_vector(`v`) OVER (
      PARTITION BY `key` ORDER BY `t` RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
    FROM vectors"""
    with t_env.execute_sql(query).collect() as results:
        means = {(row[0], row[1]): row[2] for row in results}
    assert means[("a", 1000)] is None
    np.testing.assert_allclose(means[("a", 2000)], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(means[("b", 3000)], [0.5, 0.5, 0.5])
    np.testing.assert_allclose(means[("a", 4000)], [2.0, 1.0, 0.0])


@pytest.mark.integration
@pytest.mark.isolated  # a MiniCluster over a local file: no shared service
@pytest.mark.timeout(180)
def test_previous_time_gives_the_clicks_of_one_millisecond_one_earlier_time(settings: Settings, tmp_path: Path) -> None:
    # Two clicks of user a at 2000 ms, in the file in either order: both get 1000, never each other.
    rows = [("a", 1000), ("a", 2000), ("b", 2000), ("a", 2000), ("a", 5000)]
    (tmp_path / "clicks.csv").write_text("".join(f"{key},{ms}\n" for key, ms in rows))
    t_env = minicluster(settings)
    t_env.execute_sql(f"""
    CREATE TEMPORARY TABLE clicks (
      `key` STRING, `ms` BIGINT, `t` AS TO_TIMESTAMP_LTZ(`ms`, 3), WATERMARK FOR `t` AS `t` - INTERVAL '1' SECOND
    ) WITH ('connector' = 'filesystem', 'path' = '{tmp_path / "clicks.csv"}', 'format' = 'csv')""")
    query = f"""
    SELECT `key`, `ms`, {epoch_millis("`previous`")} FROM (
      SELECT `key`, `ms`, previous_time(`t`) OVER (
        PARTITION BY `key` ORDER BY `t` RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS `previous`
      FROM clicks)"""
    with t_env.execute_sql(query).collect() as results:
        previous = sorted((row[0], row[1], row[2]) for row in results)
    assert previous == [("a", 1000, None), ("a", 2000, 1000), ("a", 2000, 1000), ("a", 5000, 2000), ("b", 2000, None)]

"""``mean_vector``, the job's Java aggregate (``udfs/java``): built from source, run in Flink SQL."""

from __future__ import annotations

import sys
import zipfile

import numpy as np
import pytest

from pricewave.config import Settings
from pricewave.job.environment import MEAN_VECTOR_CLASS, register_java_functions
from pricewave.stack.jars import java_udf_jar


def test_the_jar_is_built_from_the_sources_once_and_holds_the_function(settings: Settings) -> None:
    jar = java_udf_jar(settings)
    built = jar.stat().st_mtime_ns
    assert java_udf_jar(settings) == jar and jar.stat().st_mtime_ns == built, "rebuilt with unchanged sources"
    with zipfile.ZipFile(jar) as archive:
        assert MEAN_VECTOR_CLASS.replace(".", "/") + ".class" in archive.namelist()


@pytest.mark.integration
@pytest.mark.isolated  # a MiniCluster over literal rows: no shared service
@pytest.mark.timeout(180)
def test_running_mean_per_key_skips_null_vectors_and_is_null_before_any(settings: Settings) -> None:
    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment

    config = Configuration()
    config.set_string("parallelism.default", "1")
    config.set_string("python.executable", sys.executable)
    t_env = TableEnvironment.create(
        EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(config).build()
    )
    register_java_functions(t_env, settings)
    # (key, time, vector): a null vector first, two vectors for a, one for b
    rows = [("a", 1, None), ("a", 2, [1.0, 2.0, 3.0]), ("b", 3, [0.5, 0.5, 0.5]), ("a", 4, [3.0, 0.0, -3.0])]

    def vector(v: list[float] | None) -> str:
        return "CAST(NULL AS ARRAY<FLOAT>)" if v is None else f"ARRAY[{', '.join(f'CAST({x} AS FLOAT)' for x in v)}]"

    values = ", ".join(f"('{key}', {time}, {vector(v)})" for key, time, v in rows)
    query = f"""
    SELECT `key`, `t`, mean_vector(`v`) OVER (
      PARTITION BY `key` ORDER BY `proc` ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
    FROM (SELECT *, PROCTIME() AS `proc` FROM (VALUES {values}) AS input(`key`, `t`, `v`))"""
    with t_env.execute_sql(query).collect() as results:
        means = {(row[0], row[1]): row[2] for row in results}
    assert means[("a", 1)] is None
    np.testing.assert_allclose(means[("a", 2)], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(means[("b", 3)], [0.5, 0.5, 0.5])
    np.testing.assert_allclose(means[("a", 4)], [2.0, 1.0, 0.0])

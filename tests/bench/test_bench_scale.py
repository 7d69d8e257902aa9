"""bench_scale's reading of the runner's progress lines."""

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO_ROOT, "bench"))

import bench_scale  # noqa: E402

LOG = """checked span 2013: 4388 rows in /data/span-2013
--- backfill: ingest and validate spans 2013, 2014
[10:00:01] start CsvExampleGen
[10:00:09] end   CsvExampleGen  8.5s  complete
[10:00:11] end   CsvExampleGen  10.25s  complete
[10:00:12] end   StatisticsGen  1.0s  cached
[10:00:12] end   SpanResolver  0.0s  resolved
[10:00:40] FAILED Evaluator after 3.0s
  CsvExampleGen            complete     8.5s
"""


def test_component_seconds_sums_runs_and_skips_resolvers_and_failures(tmp_path):
    path = tmp_path / "run.log"
    path.write_text(LOG)
    assert bench_scale.component_seconds(str(path)) == {
        "CsvExampleGen": {"seconds": 18.8, "runs": 2},
        "StatisticsGen": {"seconds": 1.0, "runs": 1},
    }

"""Fast defaults: usable cores and the values derived for flags left unset."""

import pytest

from serving import defaults
from serving.config import parse_flags


@pytest.mark.parametrize(
    "cpu_max, cores",
    [
        ("max 100000\n", 4),  # no quota: the affinity set
        ("150000 100000\n", 2),  # 1.5 CPUs round up
        ("50000 100000\n", 1),
        ("800000 100000\n", 4),  # a quota above the affinity set
        ("garbage", 4),
        (None, 4),  # no cgroup v2 file
    ],
)
def test_usable_cores(tmp_path, cpu_max, cores):
    path = tmp_path / "cpu.max"
    if cpu_max is not None:
        path.write_text(cpu_max)
    assert defaults.usable_cores(str(path), affinity={0, 1, 2, 3}) == cores


def _args(*argv):
    return parse_flags(["--model_base_path=/m", *argv])


def test_unset_flags_get_the_fast_values():
    args = _args()
    derived = defaults.apply(args, cores=4)
    batching = args.derived_batching
    assert args.enable_batching is True
    assert (
        batching.max_batch_size,
        batching.batch_timeout_micros,
        batching.max_enqueued_batches,
        batching.num_batch_threads,
        batching.run_unbatchable_alone,
    ) == (128, 0, 100, 3, True)
    assert (args.tensorflow_intra_op_parallelism, args.tensorflow_inter_op_parallelism) == (1, -1)
    line = defaults.describe(4, derived)
    assert line.startswith("4 usable core(s); defaults for the flags not given: batching on")
    assert "num_batch_threads 3" in line and "TF intra-op threads 1" in line
    one_core = _args()
    defaults.apply(one_core, cores=1)
    assert one_core.derived_batching.num_batch_threads == 1


def test_given_flags_keep_tf_servings_meaning():
    args = _args(
        "--enable_batching=true",
        "--tensorflow_intra_op_parallelism=4",
        "--tensorflow_inter_op_parallelism=0",
    )
    assert defaults.describe(2, defaults.apply(args, cores=2)).endswith(
        "every performance flag was given explicitly"
    )
    # batching on with TF Serving's defaults (no derived parameters), threads as given
    assert args.enable_batching is True and args.derived_batching is None
    assert (args.tensorflow_intra_op_parallelism, args.tensorflow_inter_op_parallelism) == (4, 0)
    off = _args("--enable_batching=false")
    defaults.apply(off, cores=2)
    assert off.enable_batching is False and off.derived_batching is None


def test_a_batching_file_or_session_parallelism_is_used():
    args = _args("--batching_parameters_file=/b.config", "--tensorflow_session_parallelism=3")
    defaults.apply(args, cores=8)
    assert args.enable_batching is True and args.derived_batching is None
    assert (args.tensorflow_intra_op_parallelism, args.tensorflow_inter_op_parallelism) == (3, 3)


@pytest.mark.slow
@pytest.mark.ours
def test_server_without_flags_batches_and_still_serves_any_request(
    tmp_path, start_server, monitoring_config
):
    import model_factory
    import requests

    base = tmp_path / "m"
    model_factory.save_half_plus_two(str(base / "1"))
    server = start_server(
        [
            f"--model_base_path={base}",
            "--model_name=m",
            f"--monitoring_config_file={monitoring_config}",
        ],
        ready_model="m",
    )
    url = f"{server.url}/v1/models/m:predict"
    # 200 rows > max_batch_size 128: runs alone instead of TF Serving's "Task size" error
    big = requests.post(url, json={"instances": [[float(i)] for i in range(200)]}, timeout=60)
    assert big.status_code == 200, big.text
    assert big.json()["predictions"][199] == [0.5 * 199 + 2.0]
    metrics = requests.get(f"{server.url}/monitoring/prometheus/metrics", timeout=60).text
    assert "# TYPE :tensorflow:serving:batching_session:input_batch_size histogram" not in metrics
    one = requests.post(url, json={"instances": [[1.0]]}, timeout=60)
    assert one.json() == {"predictions": [[2.5]]}
    metrics = requests.get(f"{server.url}/monitoring/prometheus/metrics", timeout=60).text
    assert "# TYPE :tensorflow:serving:batching_session:input_batch_size histogram" in metrics
    assert "defaults for the flags not given: batching on (max_batch_size 128" in server.read_log()


@pytest.mark.slow
def test_sessions_inline_function_calls_and_predict_the_same(tmp_path):
    import model_factory
    import numpy as np

    from serving.servable import Servable
    from serving.server import _session_config

    args = parse_flags(["--model_name=m", "--model_base_path=/m"])
    defaults.apply(args, 2)
    config = _session_config(args)
    assert config.graph_options.optimizer_options.do_function_inlining
    assert (config.intra_op_parallelism_threads, config.inter_op_parallelism_threads) == (1, -1)
    path = model_factory.save_taxi_like(str(tmp_path / "1"))
    inlined, plain = Servable("m", 1, path, session_config=config), Servable("m", 1, path)
    examples = np.array([model_factory.taxi_example(i).SerializeToString() for i in range(5)])
    for key in ("serving_examples", "classification", "regression"):
        got = inlined.run(
            inlined.signatures[key], {a: examples for a in inlined.signatures[key].inputs}
        )
        want = plain.run(plain.signatures[key], {a: examples for a in plain.signatures[key].inputs})
        assert got.keys() == want.keys()
        for alias in got:
            np.testing.assert_array_equal(got[alias], want[alias])
    inlined.close()
    plain.close()

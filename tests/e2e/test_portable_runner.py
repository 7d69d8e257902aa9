"""The whole pipeline on Beam's portable runner (the API of Flink, Spark and
Dataflow Runner v2), against Beam's own Python job service on loopback."""

import glob
import gzip
import hashlib
import os
import socket
import subprocess
import sys
import time

import pytest
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from taxi_runs import REPO_ROOT, run_pipeline
from tensorflow.core.example import example_pb2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def job_service(tmp_path):
    port = _free_port()
    log = open(tmp_path / "job_service.log", "w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "apache_beam.runners.portability.local_job_service_main",
            f"--port={port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, (tmp_path / "job_service.log").read_text()[-3000:]
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.5)
    else:
        pytest.fail("Beam's job service did not open its port within 120 s")
    try:
        yield f"localhost:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _raw_examples(output_dir: str) -> dict:
    """(span, split) -> sorted digests of the serialized tf.Examples ExampleGen wrote."""
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = os.path.join(output_dir, "metadata.sqlite")
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(config)
    result = {}
    for artifact in store.get_artifacts_by_type("Examples"):
        if "/CsvExampleGen/" not in artifact.uri:
            continue
        # The runner ingests each span as its own ExampleGen run: the span is a
        # custom property (TFX's own `span` property stays 0).
        span = artifact.custom_properties["span"].int_value
        for folder in sorted(glob.glob(os.path.join(artifact.uri, "Split-*"))):
            digests = []
            for path in sorted(glob.glob(os.path.join(folder, "*.gz"))):
                digests += _records(path)
            result[span, os.path.basename(folder)] = sorted(digests)
    return result


def _records(path: str) -> list[str]:
    """Digests of the tf.Examples of one gzipped TFRecord file (length-prefixed framing).

    Each Example is re-serialized deterministically: the two runners write the
    same Examples with their feature maps in different byte orders.
    """
    digests = []
    with gzip.open(path, "rb") as f:
        while header := f.read(12):
            length = int.from_bytes(header[:8], "little")
            example = example_pb2.Example.FromString(f.read(length))
            digests.append(
                hashlib.sha256(example.SerializeToString(deterministic=True)).hexdigest()
            )
            f.read(4)  # data CRC
    return digests


@pytest.mark.slow
@pytest.mark.e2e
def test_whole_pipeline_on_the_portable_runner_matches_the_direct_runner(
    taxi_run, job_service, tmp_path
):
    output = str(tmp_path / "portable")
    result = run_pipeline(
        output,
        taxi_run["data_dir"],
        "--beam-arg=--runner=PortableRunner",
        f"--beam-arg=--job_endpoint={job_service}",
        "--beam-arg=--environment_type=LOOPBACK",
        timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "no worker processes of ours" in result.stdout
    # Every span's splits hold exactly the DirectRunner's records.
    portable, direct = _raw_examples(output), _raw_examples(taxi_run["output_dir"])
    assert set(portable) == set(direct) and len(direct) >= 6
    for key in direct:
        assert portable[key] == direct[key], key
    # The code reached the runner's workers as one staged sdist.
    assert len(glob.glob(os.path.join(output, "beam-packages", "taxi_mlops-*.tar.gz"))) == 1
    # Trained, evaluated, blessed and pushed like the DirectRunner's run.
    assert os.listdir(os.path.join(output, "serving", "taxi"))

"""``taxi-kubeflow-compile``: compile the pipeline for Kubeflow Pipelines v2 / Vertex AI Pipelines.

Examples::

    taxi-kubeflow-compile --image europe-docker.pkg.dev/p/r/taxi:1 \\
        --pipeline-root gs://b/taxi/root --data-root gs://b/taxi/data \\
        --schema-dir gs://b/taxi/schema --serving-dir gs://b/taxi/serving \\
        --output taxi_pipeline.json
    # Beam components on Dataflow instead of in the step's container:
    taxi-kubeflow-compile ... --beam-arg=--runner=DataflowRunner \\
        --beam-arg=--project=p --beam-arg=--region=europe-west4 \\
        --beam-arg=--temp_location=gs://b/tmp

The output is a pipeline job spec (JSON) to submit with the Vertex AI SDK
(``aiplatform.PipelineJob(template_path=...)``) or to upload to a Kubeflow
Pipelines v2 cluster. It is built from ``create_pipeline(portable=True)``:
the same components, code and configuration as the local run, with TFX's
stock resolvers (see that flag). Every step runs in ``--image``, an image with
this project installed (``deploy/pipeline/Dockerfile``); paths must be ones
the steps can read and write (``gs://``, a mounted volume).
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pipeline import configs  # noqa: E402
from pipeline.local_runner import (  # noqa: E402
    DEPENDENCY_FLAGS,
    add_training_flags,
    beam_args,
    code_fingerprints,
    training_settings,
)

# Where deploy/pipeline/Dockerfile puts the project inside the image.
IMAGE_PROJECT_DIR = "/pipeline"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="taxi-kubeflow-compile",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--image", required=True, help="container image every step runs in")
    parser.add_argument("--pipeline-root", required=True, help="root of the steps' outputs")
    parser.add_argument("--data-root", required=True, help="folder of span-<N>/*.csv")
    parser.add_argument("--schema-dir", required=True, help="folder with the curated schema.pbtxt")
    parser.add_argument("--serving-dir", required=True, help="base dir of pushed versions")
    parser.add_argument("--output", default="taxi_pipeline.json", help="pipeline spec to write")
    parser.add_argument("--pipeline-name", default=configs.PIPELINE_NAME)
    add_training_flags(parser)
    parser.add_argument(
        "--beam-arg",
        action="append",
        default=[],
        help="Beam flag for the Beam steps (repeatable); default: the in-memory "
        f"DirectRunner inside the step, code from {IMAGE_PROJECT_DIR}/setup.py",
    )
    return parser.parse_args(argv)


def compile_pipeline(args: argparse.Namespace) -> str:
    """Writes the pipeline spec for ``args``; returns its path."""
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

    from pipeline.pipeline import create_pipeline

    # Inside the image, the project (the components' code) is at IMAGE_PROJECT_DIR.
    extra = list(args.beam_arg)
    if not any(a.split("=", 1)[0] in DEPENDENCY_FLAGS for a in extra):
        extra.append(f"--setup_file={IMAGE_PROJECT_DIR}/setup.py")
    flags = beam_args("in_memory", extra)
    pipeline = create_pipeline(
        pipeline_name=args.pipeline_name,
        pipeline_root=args.pipeline_root,
        data_root=args.data_root,
        schema_path=args.schema_dir,
        serving_dir=args.serving_dir,
        metadata_path="",
        code_fingerprints=code_fingerprints(),
        beam_pipeline_args=flags,
        **training_settings(args),
        portable=True,
    )
    output = os.path.abspath(args.output)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(default_image=args.image),
        output_dir=os.path.dirname(output),
        output_filename=os.path.basename(output),
    )
    runner.run(pipeline, write_out=True)
    return output


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    path = compile_pipeline(args)
    print(f"wrote {path}: pipeline {args.pipeline_name!r}, image {args.image}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

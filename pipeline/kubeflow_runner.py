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
Pipelines v2 cluster. It is built from ``create_pipeline`` with portable settings:
the same components, code and configuration as the local run, with TFX's
stock resolvers (see that flag). Every step runs in ``--image``, an image with
this project installed (``deploy/pipeline/Dockerfile``); paths must be ones
the steps can read and write (``gs://``, a mounted volume).
"""

from __future__ import annotations

import argparse
import os
import sys

from pipeline import beam_setup, code_digest, flags

# Where deploy/pipeline/Dockerfile puts the project inside the image.
IMAGE_PROJECT_DIR = "/pipeline"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags of ``taxi-kubeflow-compile`` (see ``pipeline.flags.parse_kubeflow_args``)."""
    return flags.parse_kubeflow_args(argv, __doc__, IMAGE_PROJECT_DIR)


def compile_pipeline(args: argparse.Namespace) -> str:
    """Writes the pipeline spec for ``args``; returns its path."""
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

    from pipeline.pipeline import create_pipeline
    from pipeline.settings import PipelineSettings

    # Inside the image, the project (the components' code) is at IMAGE_PROJECT_DIR.
    extra = list(args.beam_arg)
    if not beam_setup.has_dependency_flag(extra):
        extra.append(f"--setup_file={IMAGE_PROJECT_DIR}/setup.py")
    settings = PipelineSettings(
        pipeline_name=args.pipeline_name,
        pipeline_root=args.pipeline_root,
        data_root=args.data_root,
        schema_path=args.schema_dir,
        serving_dir=args.serving_dir,
        code_fingerprints=code_digest.node_fingerprints(),
        beam_pipeline_args=beam_setup.beam_args("in_memory", extra),
        portable=True,
        training=flags.training_settings(args),
    )
    pipeline = create_pipeline(settings)
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

"""Installable package for the taxi TFX pipeline, its components and server."""

from setuptools import find_packages, setup

setup(
    name="taxi-mlops",
    version="0.1.0",
    description="End-to-end TFX pipeline, TF-Serving-compatible server and tooling",
    python_requires=">=3.9,<3.11",
    packages=find_packages(
        include=[
            "core*",
            "pipeline*",
            "components*",
            "serving*",
            "reporting*",
            "monitoring*",
            "lineage*",
        ]
    ),
    # core/data is a symlink to data/: the bundled spans and schema ship as files
    # of the core package (core.resources finds them there).
    package_data={
        "core": ["data/taxi/*/*.csv", "data/schema/*.pbtxt"],
        "monitoring": ["drift_null.json"],
    },
    install_requires=[
        "tfx==1.16.0",
        "tensorflow==2.16.2",
        "tf-keras==2.16.0",
        "apache-beam==2.59.0",
        "dill==0.3.1.1",
        "tensorflow-serving-api==2.16.1",
        "kfp-pipeline-spec==0.2.2",  # taxi-kubeflow-compile
    ],
    entry_points={
        "console_scripts": [
            "taxi-pipeline=pipeline.local_runner:cli",
            "taxi-kubeflow-compile=pipeline.kubeflow_runner:main",
            "taxi-lineage=lineage.cli:main",
            "taxi-report=reporting.cli:main",
            "serve=serving.server:main",
            "serving-client=serving.client_cli:main",
            "taxi-monitor=monitoring.cli:main",
            "taxi-model-card=reporting.model_card:main",
        ]
    },
)

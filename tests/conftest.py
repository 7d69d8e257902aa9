"""Shared test set-up: legacy Keras for TF 2.16, quiet TF logs."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIR = os.path.join(REPO_ROOT, "data", "taxi")
SCHEMA_DIR = os.path.join(REPO_ROOT, "data", "schema")

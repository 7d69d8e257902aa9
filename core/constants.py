"""Project-wide constants."""

MODEL_NAME = "taxi"

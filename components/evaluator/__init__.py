"""TFX's Evaluator, scoring a seeded sample of at most ``max_rows`` rows of a large split."""

from components.evaluator.component import Evaluator

__all__ = ["Evaluator"]

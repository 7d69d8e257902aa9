"""TFX's StatisticsGen, reading each split's record files in batches."""

from components.statistics_gen.component import StatisticsGen

__all__ = ["StatisticsGen"]

"""Streaming CSV ExampleGen: CsvExampleGen's records, in bounded memory."""

from components.example_gen.component import CsvExampleGen

__all__ = ["CsvExampleGen"]

"""ML Metadata, read: the lineage graph, spans, pushed versions, blessings and runs.

A low layer: it imports libraries and nothing of the project above core/,
and everything that asks ML Metadata a question (the pipeline runner's
backfill and summary, reporting, the model card, monitoring) asks it here.

* ``lineage.metadata_store``: where the store lives (SQLite or MySQL) and
  opening it with retries.
* ``lineage.graph`` (re-exported here): the graph and the questions asked of it.
* ``lineage.runs``: pipeline runs (``pipeline_run`` contexts) and their artifacts.
* ``lineage.cli``: ``taxi-lineage``.
"""

import core.env  # noqa: F401 - first: the environment TensorFlow needs (legacy Keras)
from lineage.graph import (
    DONE_STATES,
    Graph,
    LineageError,
    Metadata,
    execution_ref,
    ingested_spans,
    is_raw_examples,
    models_for_span,
    open_store,
    prop,
    pushed_versions,
    span_of,
    split_names,
    version_lineage,
)

__all__ = [
    "DONE_STATES",
    "Graph",
    "LineageError",
    "Metadata",
    "execution_ref",
    "ingested_spans",
    "is_raw_examples",
    "models_for_span",
    "open_store",
    "prop",
    "pushed_versions",
    "span_of",
    "split_names",
    "version_lineage",
]

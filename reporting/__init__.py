"""Inspect taxi pipeline runs: data validation, model analysis, lineage.

Everything is found through ML Metadata (``<run dir>/metadata.sqlite``), never
through hard-coded artifact paths. The notebooks under ``notebooks/`` and the
``taxi-report`` command (``reporting.cli:main``) are thin callers of this
package:

* ``lineage.runs`` (not this package): pipeline runs and their artifacts, from MLMD;
  ``reporting.runs``: which run dir and run the reports show.
* ``reporting.data_validation``: TFDV statistics, schema, anomalies, drift.
* ``reporting.model_analysis``: TFMA metrics, baseline comparison, blessing.
* ``reporting.lineage_view``: served model back to spans; table of runs.
* ``reporting.html_report``: one self-contained HTML file per run.
* ``reporting.model_card``: the model card of a pushed version (``taxi-model-card``).
"""

import core.env  # noqa: F401 - first: the environment TensorFlow needs (legacy Keras)

"""Layer 0 of the project: what every other package relies on and nothing else.

* ``core.env``: the process environment TensorFlow must see (legacy Keras),
  set on import; every top-level package's ``__init__`` imports it first.
* ``core.constants``: names shared by the pipeline, serving and monitoring.
* ``core.resources``: the bundled data (spans, schema) and the default run dir,
  found the same way in a checkout and in an installed wheel.

This package imports nothing from the project (tests/test_architecture.py).
"""

from core import env  # noqa: F401 - sets the environment before anything imports TensorFlow

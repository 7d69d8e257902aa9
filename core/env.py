"""The environment TensorFlow needs, set once on import (defaults only).

TF 2.16 ships Keras 3 as ``tf.keras``; the Trainer, Tuner, TFT and TFMA code
of TFX 1.16 (and our SavedModels) needs Keras 2, which ``tf_keras`` provides
when ``TF_USE_LEGACY_KERAS=1`` is in the environment *before* TensorFlow is
first imported. TensorFlow reads it once, at import, so setting it later has no
effect. Every top-level package's ``__init__`` imports this module first,
which makes ``import serving.servable`` (or any other project module) safe in
a fresh interpreter; child processes inherit the variables.

``setdefault``: a value the user set wins (e.g. ``TF_CPP_MIN_LOG_LEVEL=0`` to
see TensorFlow's C++ logs).
"""

import os

DEFAULTS = {
    # tf.keras is tf_keras (Keras 2): TFX 1.16 and TFT/TFMA need it on TF 2.16.
    "TF_USE_LEGACY_KERAS": "1",
    # TensorFlow's C++ INFO and WARNING lines off (errors still show).
    "TF_CPP_MIN_LOG_LEVEL": "2",
}

for _name, _value in DEFAULTS.items():
    os.environ.setdefault(_name, _value)

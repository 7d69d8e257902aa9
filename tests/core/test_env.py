"""core.env: importing any project package gives TensorFlow legacy Keras."""

import os
import subprocess
import sys

import pytest

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PROBE = """
import os, sys
assert "TF_USE_LEGACY_KERAS" not in os.environ
import serving.servable
import tensorflow as tf
print(os.environ["TF_USE_LEGACY_KERAS"], tf.keras.__name__)
"""


@pytest.mark.slow
def test_importing_a_serving_module_in_a_fresh_interpreter_gives_legacy_keras(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    env["PYTHONPATH"] = CHECKOUT
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # Keras 2 (tf_keras.api._v2.keras); without the variable: Keras 3 (keras._tf_keras.keras).
    flag, keras_module = done.stdout.split()
    assert flag == "1"
    assert keras_module.startswith("tf_keras."), keras_module


@pytest.mark.slow
def test_a_value_the_user_set_wins(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    env.update(PYTHONPATH=CHECKOUT, TF_CPP_MIN_LOG_LEVEL="1")
    code = "import os, core.env; print(os.environ['TF_CPP_MIN_LOG_LEVEL'], os.environ['TF_USE_LEGACY_KERAS'])"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1"]

"""Faults injected into a blessed SavedModel, for tests (not a test module).

`save_inverted` writes a wrapper SavedModel: the source model, loaded, with
its signatures re-exported; the chosen ones answer 1 - x for every float
output x (a probability p becomes 1 - p, classify scores [1 - p, p] become
[p, 1 - p]), the others answer as before. Inverting every signature makes a
model that serves fine and agrees with itself, only wrong; inverting
`serving_default` alone makes its REST/gRPC answers disagree with the
`serving_examples` signature (a training/serving skew). `save_failing`
writes one whose every call fails (InvalidArgument "injected fault"): a
version that loads but cannot answer.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402


def _wrap(signature, fault: str | None):
    specs = signature.structured_input_signature[1]

    @tf.function(input_signature=[specs])
    def call(inputs):
        outputs = signature(**inputs)
        if fault == "invert":
            return {k: 1 - v if v.dtype.is_floating else v for k, v in outputs.items()}
        if fault == "fail":
            # A condition known only at run time (no output is below -1): the
            # call fails when served, not when traced or loaded.
            value = next(v for v in outputs.values() if v.dtype.is_floating)
            never = tf.reduce_any(value < -1.0)
            with tf.control_dependencies([tf.debugging.Assert(never, ["injected fault"])]):
                return {k: tf.identity(v) for k, v in outputs.items()}
        return outputs

    return call.get_concrete_function()


def save_inverted(source_dir: str, export_dir: str, signatures=None) -> str:
    """Re-exports the SavedModel in `source_dir`, inverting `signatures` (None: all)."""
    return _save(source_dir, export_dir, signatures, "invert")


def save_failing(source_dir: str, export_dir: str) -> str:
    """Re-exports the SavedModel in `source_dir`; every signature call fails."""
    return _save(source_dir, export_dir, None, "fail")


def _save(source_dir: str, export_dir: str, signatures, fault: str) -> str:
    module = tf.Module()
    module.source = tf.saved_model.load(source_dir)  # tracks its variables, tables and assets
    names = set(module.source.signatures) if signatures is None else set(signatures)
    unknown = names - set(module.source.signatures)
    if unknown:
        raise ValueError(f"{source_dir} has no signature(s) {sorted(unknown)}")
    wrapped = {
        name: _wrap(signature, fault if name in names else None)
        for name, signature in module.source.signatures.items()
    }
    module.wrapped = list(wrapped.values())
    tf.saved_model.save(module, export_dir, signatures=wrapped)
    return export_dir

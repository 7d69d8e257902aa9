"""The Evaluator's overall metrics of a model, read with TFMA's own loader.

The exporter's live-quality baseline of a version is the overall
`binary_accuracy` of the evaluation that blessed it.
"""

from __future__ import annotations


def overall_metric(evaluation_uri: str, name: str) -> float:
    """The candidate model's value of metric `name` on the overall (unsliced) slice.

    Raises:
      KeyError: the evaluation has no such overall metric.
    """
    import tensorflow_model_analysis as tfma

    for per_slice in tfma.load_metrics(evaluation_uri):
        if per_slice.slice_key.single_slice_keys:
            continue
        for item in per_slice.metric_keys_and_values:
            key = item.key
            if (
                key.name == name
                and key.model_name in ("", "candidate")
                and not key.is_diff
                and item.value.WhichOneof("type") == "double_value"
            ):
                return item.value.double_value.value
    raise KeyError(f"no overall {name} in the evaluation at {evaluation_uri}")

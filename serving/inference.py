"""Signature selection and result extraction shared by REST and gRPC.

Predict accepts any signature; Classify and Regress require TF Serving's
classification/regression signature shape (one `inputs` string input and
`classes`/`scores` or `outputs` outputs; the method name is not checked, as
with upstream's default `--enable_signature_method_name_check=false`).
MultiInference runs several classify/regress signatures over one input in
one session call, with upstream's checks.
"""

import numpy as np
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import inference_pb2

from serving import model_info
from serving.dtypes import enum_name
from serving.errors import Code, ServingError, invalid
from serving.servable import DEFAULT_SIGNATURE, Servable, Signature


def predict_signature_rest(servable: Servable, name: str) -> Signature:
    """Looks up a predict signature with REST's error text."""
    key = name or DEFAULT_SIGNATURE
    signature = servable.signatures.get(key)
    if signature is None:
        raise invalid(f'Serving signature name: "{key}" not found in signature def')
    if not signature.inputs:
        raise invalid(f"Failed to get input map for signature: {name or 'DEFAULT'}")
    return signature


def predict_signature_grpc(servable: Servable, name: str) -> Signature:
    """Looks up a predict signature with gRPC's error text."""
    key = name or DEFAULT_SIGNATURE
    signature = servable.signatures.get(key)
    if signature is None:
        raise ServingError(Code.FAILED_PRECONDITION, f'Serving signature key "{key}" not found.')
    return signature


def _named_signature(servable: Servable, name: str) -> Signature:
    key = name or DEFAULT_SIGNATURE
    signature = servable.signatures.get(key)
    if signature is None:
        raise invalid(f"No signature was found with the name: {key}")
    if len(signature.inputs) != 1:
        raise invalid("Expected one input Tensor.")
    return signature


def classify_signature(servable: Servable, name: str) -> Signature:
    """Returns a signature usable for Classify, or raises upstream's error."""
    signature = _named_signature(servable, name)
    if len(signature.outputs) not in (1, 2):
        raise invalid(f"Expected one or two output Tensors, found {len(signature.outputs)}")
    if "inputs" not in signature.inputs:
        raise invalid(f"No classification inputs found in SignatureDef: {signature.debug_string()}")
    if "classes" not in signature.outputs and "scores" not in signature.outputs:
        raise invalid(
            "Expected classification signature outputs to contain at least one of "
            f'"classes" or "scores". Signature was: {signature.debug_string()}'
        )
    return signature


def regress_signature(servable: Servable, name: str) -> Signature:
    """Returns a signature usable for Regress, or raises upstream's error."""
    signature = _named_signature(servable, name)
    if len(signature.outputs) != 1:
        raise invalid("Expected one output Tensor.")
    if "inputs" not in signature.inputs:
        raise invalid(f"No regression inputs found in SignatureDef: {signature.debug_string()}")
    if "outputs" not in signature.outputs:
        raise invalid(f"No regression outputs found in SignatureDef: {signature.debug_string()}")
    return signature


def _shape(array: np.ndarray) -> str:
    return "[" + ",".join(str(d) for d in array.shape) + "]"


def _type_name(array: np.ndarray) -> str:
    if array.dtype.kind in "OSU":
        return "DT_STRING"
    mapping = {
        np.dtype(np.float32): types_pb2.DT_FLOAT,
        np.dtype(np.float64): types_pb2.DT_DOUBLE,
        np.dtype(np.int64): types_pb2.DT_INT64,
        np.dtype(np.int32): types_pb2.DT_INT32,
    }
    return enum_name(mapping.get(array.dtype, types_pb2.DT_INVALID))


def classification_results(outputs: dict, batch: int) -> list:
    """Turns classify outputs into [[(label bytes, score), ...] per example]."""
    scores = outputs.get("scores")
    classes = outputs.get("classes")
    for tensor in (classes, scores):
        if tensor is None:
            continue
        if tensor.ndim != 2:
            raise invalid(
                f"Expected Tensor shape: [batch_size num_classes] but got {_shape(tensor)}"
            )
        if tensor.shape[0] != batch:
            raise invalid(
                f"Input batch size did not match output batch size: {batch} vs. {tensor.shape[0]}"
            )
    if classes is not None and classes.dtype.kind not in "OSU":
        raise invalid(f"Expected classes Tensor of DT_STRING. Got: {_type_name(classes)}")
    if scores is not None and scores.dtype != np.float32:
        raise invalid(f"Expected scores Tensor of DT_FLOAT. Got: {_type_name(scores)}")
    if classes is not None and scores is not None and classes.shape != scores.shape:
        raise invalid(
            f"Tensors class and score should match in shape, but had shape "
            f"{_shape(classes)} and {_shape(scores)} respectively."
        )
    width = (scores if scores is not None else classes).shape[1]
    results = []
    for i in range(batch):
        results.append(
            [
                (
                    classes[i, j] if classes is not None else b"",
                    float(scores[i, j]) if scores is not None else 0.0,
                )
                for j in range(width)
            ]
        )
    return results


def regression_results(outputs: dict, batch: int) -> list:
    """Turns regress outputs into one float per example."""
    values = outputs["outputs"]
    if values.dtype != np.float32:
        raise invalid(f"Expected output Tensor of DT_FLOAT.  Got: {_type_name(values)}")
    if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
        raise invalid(
            "Expected output Tensor shape to be either [batch_size] or "
            f"[batch_size, 1] but got {_shape(values)}"
        )
    if values.shape[0] != batch:
        raise invalid(
            f"Input batch size did not match output batch size: {batch} vs. {values.shape[0]}"
        )
    return [float(v) for v in values.reshape(-1)]


def examples_array(serialized: list) -> np.ndarray:
    """Packs serialized tf.Examples into a 1-D string array."""
    array = np.empty(len(serialized), dtype=object)
    array[:] = serialized
    return array


def fill_classifications(results: list, into) -> None:
    """Adds `classification_results` to a `ClassificationResult` proto."""
    for classes in results:
        item = into.classifications.add()
        for label, score in classes:
            item.classes.add(
                label=label.decode("utf-8", "replace") if isinstance(label, bytes) else label,
                score=score,
            )


_CLASSIFY = "tensorflow/serving/classify"
_REGRESS = "tensorflow/serving/regress"
_MULTI_SIGNATURE_PREFIX = "\x00multi_inference:"


# ---------------------------------------------------------------------------
# MultiInference (tensorflow_serving/servables/tensorflow/multi_inference.cc)
# ---------------------------------------------------------------------------


def multi_inference_plan(servable, request):
    """Checks a MultiInferenceRequest's tasks as TF Serving does.

    Returns:
      (tasks, signature): `tasks` is [(ModelSpec, method, Signature)] in
      request order; `signature` is one synthetic signature that feeds the
      examples to every task's input tensor and fetches the union of their
      outputs (one session run, as upstream).

    Raises:
      ServingError: with upstream's code and message.
    """
    model_name = ""
    names = set()
    tasks = []
    for task in request.tasks:
        spec = task.model_spec
        if not spec.name:
            raise invalid("Found ModelSpec with an empty model name.")
        if not model_name:
            model_name = spec.name
        elif spec.name != model_name:
            raise invalid(
                "All ModelSpecs in a MultiInferenceRequest must access the same model name."
            )
        key = spec.signature_name or DEFAULT_SIGNATURE
        if key in names:
            raise invalid(f"Duplicate evaluation of signature: {key}")
        names.add(key)
        if key not in servable.signatures:
            raise invalid(f"Requested signature not found in model graph: {key}")
        if task.method_name == _CLASSIFY:
            signature = classify_signature(servable, key)
        elif task.method_name == _REGRESS:
            signature = regress_signature(servable, key)
        else:
            raise ServingError(
                Code.UNIMPLEMENTED, f"Unsupported signature method_name: {task.method_name}"
            )
        tasks.append((spec, task.method_name, signature))
    definition = meta_graph_pb2.SignatureDef()
    for _, _, signature in tasks:
        for spec in signature.inputs.values():
            definition.inputs[spec.tensor_name].CopyFrom(signature.definition.inputs[spec.alias])
        for spec in signature.outputs.values():
            definition.outputs[spec.tensor_name].CopyFrom(signature.definition.outputs[spec.alias])
    key = _MULTI_SIGNATURE_PREFIX + ",".join(sorted(names))
    return tasks, Signature(key, definition)


def multi_inference_response(servable, tasks, outputs: dict, batch: int):
    """Builds the MultiInferenceResponse from the union run's outputs (by tensor name)."""
    response = inference_pb2.MultiInferenceResponse()
    for spec, method, signature in tasks:
        mine = {a: outputs[s.tensor_name] for a, s in signature.outputs.items()}
        result = response.results.add()
        if method == _CLASSIFY:
            results = classification_results(mine, batch)
            fill_classifications(results, result.classification_result)
        else:
            values = regression_results(mine, batch)
            for value in values:
                result.regression_result.regressions.add(value=value)
        result.model_spec.CopyFrom(
            model_info.model_spec(spec.name, servable.version, signature.key)
        )
    return response

"""One loaded model version: a TF session over the SavedModel's MetaGraph.

Like TF Serving, signatures run through the graph's `Session` and feed and
fetch tensors by name, so a feed's shape is checked by the TF runtime (not by
Python) and TF1 and TF2 SavedModels behave the same. Callables for every
signature are built once at load time; a request only feeds numpy arrays.
"""

import dataclasses
import logging
import threading

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2

from serving.dtypes import numpy_dtype
from serving.errors import Code, ServingError, from_tf_error

log = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """A signature input or output: its alias, graph tensor name and dtype."""

    alias: str
    tensor_name: str
    dtype: int


class Signature:
    """A SignatureDef with its feeds/fetches resolved and sorted by alias."""

    def __init__(self, key: str, definition: meta_graph_pb2.SignatureDef):
        self.key = key
        self.definition = definition
        self.method_name = definition.method_name
        self.inputs = {
            alias: TensorSpec(alias, info.name, info.dtype)
            for alias, info in sorted(definition.inputs.items())
        }
        self.outputs = {
            alias: TensorSpec(alias, info.name, info.dtype)
            for alias, info in sorted(definition.outputs.items())
        }
        self.input_dtypes = {a: s.dtype for a, s in self.inputs.items()}
        self.output_names = tuple(self.outputs)

    def debug_string(self) -> str:
        """The SignatureDef in text format (used in upstream error messages)."""
        return text_format.MessageToString(self.definition)


class Servable:
    """A loaded SavedModel version.

    Args:
      name: model name.
      version: numeric version.
      path: the version directory.
      tags: MetaGraph tags to load.
      session_config: optional `ConfigProto` for the session.
    """

    def __init__(self, name: str, version: int, path: str, tags=("serve",), session_config=None):
        self.name = name
        self.version = version
        self.path = path
        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph, config=session_config)
        self._callables: dict = {}
        self._lock = threading.Lock()
        self._inflight = 0
        self._idle = threading.Condition(threading.Lock())
        try:
            with self._graph.as_default():
                meta_graph = tf.compat.v1.saved_model.loader.load(self._session, list(tags), path)
        except Exception:
            self._session.close()
            raise
        self.signature_defs = meta_graph.signature_def
        self.signatures = {k: Signature(k, v) for k, v in meta_graph.signature_def.items()}
        for signature in self.signatures.values():
            if signature.inputs and signature.outputs:
                try:
                    self._callable(signature, signature.output_names)
                except Exception:  # unusable signature: fails at request time
                    log.warning(
                        "Signature %s of %s v%d is not runnable", signature.key, name, version
                    )

    def signature_def_map(self) -> meta_graph_pb2.SignatureDef:
        """Returns a `SignatureDefMap` proto with every signature."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        result = get_model_metadata_pb2.SignatureDefMap()
        for key, definition in self.signature_defs.items():
            result.signature_def[key].CopyFrom(definition)
        return result

    def _callable(self, signature: Signature, fetch_aliases: tuple):
        key = (signature.key, fetch_aliases)
        runner = self._callables.get(key)
        if runner is None:
            with self._lock:
                options = config_pb2.CallableOptions(
                    feed=[s.tensor_name for s in signature.inputs.values()],
                    fetch=[signature.outputs[a].tensor_name for a in fetch_aliases],
                )
                runner = self._session._make_callable_from_options(options)
                self._callables[key] = runner
        return runner

    def run(self, signature: Signature, feeds: dict, fetch_aliases: tuple = None) -> dict:
        """Runs a signature.

        Args:
          signature: a signature of this servable.
          feeds: alias -> ndarray for every signature input.
          fetch_aliases: output aliases to fetch (default: all, sorted).

        Returns:
          alias -> ndarray.

        Raises:
          ServingError: TF runtime errors, with their status code.
        """
        fetch_aliases = fetch_aliases or signature.output_names
        try:
            runner = self._callable(signature, fetch_aliases)
            values = runner(*[feeds[a] for a in signature.inputs])
        except tf.errors.OpError as e:
            raise from_tf_error(e) from None
        except (ValueError, TypeError) as e:
            raise ServingError(Code.INVALID_ARGUMENT, str(e)) from None
        return dict(zip(fetch_aliases, values, strict=True))

    def enter(self) -> None:
        """Marks one queued/in-flight call (unload waits for these)."""
        with self._idle:
            self._inflight += 1

    def exit(self) -> None:
        """Marks a call finished."""
        with self._idle:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.notify_all()

    def close(self, drain_timeout: float = 30.0) -> None:
        """Waits for in-flight calls (bounded), then releases the session."""
        with self._idle:
            self._idle.wait_for(lambda: self._inflight == 0, timeout=drain_timeout)
        self._callables.clear()
        self._session.close()


def serialize_input(request_input) -> np.ndarray:
    """Serializes a `tensorflow.serving.Input` to a 1-D string array.

    With `example_list_with_context`, the context is prepended to each
    example (a protobuf merge), as TF Serving does.
    """
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        records = [e.SerializeToString() for e in request_input.example_list.examples]
    elif kind == "example_list_with_context":
        context = request_input.example_list_with_context.context.SerializeToString()
        records = [
            context + e.SerializeToString()
            for e in request_input.example_list_with_context.examples
        ]
    else:
        records = []
    if not records:
        raise ServingError(Code.INVALID_ARGUMENT, "Input is empty.")
    array = np.empty(len(records), dtype=numpy_dtype(7))
    array[:] = records
    return array

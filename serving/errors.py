"""Status codes and the error type shared by the REST and gRPC front ends."""

import enum

import grpc


class Code(enum.IntEnum):
    """`tensorflow.error.Code` / absl status codes."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


_HTTP_STATUS = {
    Code.OK: 200,
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}

_GRPC_MESSAGE_LIMIT = 1024


class ServingError(Exception):
    """A failed request: a status code plus TF Serving's message text.

    Attributes:
      code: the `Code` of the failure.
      message: the bare status message (no code prefix).
      empty_body: REST writes no JSON body (URL-decoding failures upstream).
    """

    def __init__(self, code: Code, message: str, empty_body: bool = False):
        super().__init__(message)
        self.code = Code(code)
        self.message = message
        self.empty_body = empty_body

    def to_status_string(self) -> str:
        """Returns absl's `Status::ToString()` form, e.g. `INVALID_ARGUMENT: msg`."""
        return f"{self.code.name}: {self.message}"

    @property
    def http_status(self) -> int:
        return http_status(self.code)

    @property
    def grpc_code(self) -> grpc.StatusCode:
        return grpc_code(self.code)

    def grpc_details(self) -> str:
        """The message as TF Serving's gRPC layer sends it (truncated at 1024)."""
        if len(self.message) > _GRPC_MESSAGE_LIMIT:
            return self.message[:_GRPC_MESSAGE_LIMIT] + "...TRUNCATED"
        return self.message


def invalid(message: str) -> ServingError:
    """Shorthand for an INVALID_ARGUMENT error."""
    return ServingError(Code.INVALID_ARGUMENT, message)


def http_status(code: Code) -> int:
    """Maps a status code to TF Serving's HTTP status."""
    return _HTTP_STATUS.get(code, 500)


_GRPC_BY_VALUE = {c.value[0]: c for c in grpc.StatusCode}


def grpc_code(code: Code) -> grpc.StatusCode:
    """Maps a status code to the identical gRPC status code."""
    return _GRPC_BY_VALUE[int(code)]


def from_tf_error(error: Exception) -> ServingError:
    """Converts a TensorFlow runtime error into a ServingError with its code."""
    code = getattr(error, "error_code", None)
    message = getattr(error, "message", None) or str(error)
    try:
        return ServingError(Code(code), message)
    except (ValueError, TypeError):
        return ServingError(Code.UNKNOWN, message)

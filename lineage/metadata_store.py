"""Where ML Metadata lives: an SQLite file (the default) or a MySQL/MariaDB server.

A metadata *target* is what `--metadata` (or `$TAXI_METADATA`) names:

* a path: an SQLite file (`<output-dir>/metadata.sqlite` by default), one
  writer at a time, right for one person on one machine;
* `mysql://USER:PASSWORD@HOST[:PORT]/DATABASE` (or `...@localhost/DATABASE?socket=PATH`
  for a unix socket): a shared MLMD store that the pipeline, `watch`, the
  monitor and notebooks use at the same time. MLMD creates the database and
  its tables on first use. User and password are URL-decoded (`%40` is `@`).

Opening a store on MySQL retries what a concurrent writer can cause and a
retry cures (MLMD's own schema creation racing on an empty database, InnoDB
deadlocks and lock wait timeouts, a duplicate insert), with backoff up to a
deadline; `retry` does the same for a write, and `RetryingStore` repeats any
call that MySQL rolled back (what the pipeline's TFX launchers use). An
unreachable server or a
refused login is a `MetadataError` whose one-line message names the server
(password hidden), never a retry loop or a C++ crash: the config is checked
before MLMD sees it (MLMD aborts the process on an invalid one).
"""

from __future__ import annotations

import os
import random
import socket
import time
import urllib.parse

import ml_metadata as mlmd
from ml_metadata import errors as mlmd_errors
from ml_metadata.proto import metadata_store_pb2

ENV = "TAXI_METADATA"
SQLITE_FILE = "metadata.sqlite"
MYSQL_DEFAULT_PORT = 3306
OPEN_DEADLINE = 120.0
CONNECT_TIMEOUT = 10.0
# Substrings of MLMD/MySQL errors that a concurrent writer causes and a retry cures.
TRANSIENT = (
    "Deadlock found",
    "Lock wait timeout",
    "concurrent connection",
    "Please retry",
    "Duplicate entry",
)
# Errors after which MySQL has rolled the transaction back.
ROLLED_BACK = ("Deadlock found", "Lock wait timeout")


class MetadataError(ValueError):
    """The metadata target is malformed or its store cannot be opened."""


def resolve(metadata: str | None, output_dir: str) -> str:
    """`metadata`, else `$TAXI_METADATA`, else `<output_dir>/metadata.sqlite`."""
    return metadata or os.environ.get(ENV) or os.path.join(output_dir, SQLITE_FILE)


def is_mysql(target: str) -> bool:
    return target.startswith("mysql://")


def exists(target: str) -> bool:
    """A MySQL target is checked when opened; an SQLite one must be a file."""
    return is_mysql(target) or os.path.isfile(target)


def redact(target: str) -> str:
    """The target with its password replaced by `***` (for messages)."""
    if not is_mysql(target):
        return target
    parts = urllib.parse.urlsplit(target)
    if parts.password is None:
        return target
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def mysql_config(url: str) -> metadata_store_pb2.MySQLDatabaseConfig:
    """The MLMD MySQL config of a `mysql://` URL (MetadataError if malformed)."""
    parts = urllib.parse.urlsplit(url)
    where = redact(url)
    try:
        port = parts.port
    except ValueError as e:
        raise MetadataError(f"metadata URL {where}: {e}") from None
    database = urllib.parse.unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise MetadataError(f"metadata URL {where} must name one database: mysql://.../DATABASE")
    if not parts.username:
        raise MetadataError(f"metadata URL {where} names no user: mysql://USER:PASSWORD@...")
    query = urllib.parse.parse_qs(parts.query)
    unknown = set(query) - {"socket"}
    if unknown:
        raise MetadataError(f"metadata URL {where}: unknown parameters {sorted(unknown)}")
    config = metadata_store_pb2.MySQLDatabaseConfig(
        database=database,
        user=urllib.parse.unquote(parts.username),
        password=urllib.parse.unquote(parts.password or ""),
    )
    if "socket" in query:  # MLMD takes exactly one of host and socket
        config.socket = query["socket"][-1]
    elif parts.hostname:
        config.host = parts.hostname
        config.port = port or MYSQL_DEFAULT_PORT
    else:
        raise MetadataError(f"metadata URL {where} names no host (or ?socket=PATH)")
    return config


def connection_config(target: str, readonly: bool = False) -> metadata_store_pb2.ConnectionConfig:
    """MLMD ConnectionConfig of a target (SQLite: created unless `readonly`)."""
    config = metadata_store_pb2.ConnectionConfig()
    if is_mysql(target):
        config.mysql.CopyFrom(mysql_config(target))
        return config
    config.sqlite.filename_uri = target
    mode = metadata_store_pb2.SqliteMetadataSourceConfig
    config.sqlite.connection_mode = mode.READONLY if readonly else mode.READWRITE_OPENCREATE
    return config


def is_transient(error: Exception) -> bool:
    """An error of opening or writing that a concurrent writer causes and a retry cures."""
    if isinstance(error, (mlmd_errors.AbortedError, mlmd_errors.AlreadyExistsError)):
        return True
    return isinstance(error, (RuntimeError, mlmd_errors.StatusError)) and any(
        marker in str(error) for marker in TRANSIENT
    )


def _check_reachable(config: metadata_store_pb2.MySQLDatabaseConfig, target: str) -> None:
    """MetadataError unless something accepts connections where the server should be."""
    if config.socket:
        address, family = config.socket, socket.AF_UNIX
        where = f"unix socket {config.socket}"
    else:
        address, family = (config.host, config.port), None
        where = f"{config.host}:{config.port}"
    try:
        if family is None:
            socket.create_connection(address, timeout=CONNECT_TIMEOUT).close()
        else:
            with socket.socket(family) as s:
                s.settimeout(CONNECT_TIMEOUT)
                s.connect(address)
    except OSError as e:
        reason = e.strerror or str(e) or type(e).__name__
        raise MetadataError(
            f"cannot reach the MySQL server at {where} for ML Metadata {redact(target)}: {reason}"
        ) from None


def _backoff(attempt: int) -> float:
    return min(2.0, 0.05 * 2**attempt) * (0.5 + random.random())


def rolled_back(error: Exception) -> bool:
    """MySQL gave up the call's transaction (it changed nothing): safe to repeat."""
    return any(marker in str(error) for marker in ROLLED_BACK)


def retry(call, *args, deadline: float = OPEN_DEADLINE, when=is_transient, **kwargs):
    """`call(*args, **kwargs)`, retried while `when(error)` holds, until `deadline` s."""
    stop = time.monotonic() + deadline
    attempt = 0
    while True:
        try:
            return call(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - only what `when` accepts is retried
            if not when(e) or time.monotonic() >= stop:
                raise
        time.sleep(_backoff(attempt))
        attempt += 1


class RetryingStore:
    """A MetadataStore whose calls MySQL rolled back (deadlock, lock wait timeout)
    are repeated. Other errors, AlreadyExists included, reach the caller as
    they are (TFX handles those itself)."""

    def __init__(self, store: mlmd.MetadataStore, deadline: float = OPEN_DEADLINE):
        self._store = store
        self._deadline = deadline

    def __getattr__(self, name: str):
        attribute = getattr(self._store, name)
        if not callable(attribute):
            return attribute

        def call(*args, **kwargs):
            return retry(attribute, *args, deadline=self._deadline, when=rolled_back, **kwargs)

        return call


def open_store(
    target: str, readonly: bool = False, deadline: float = OPEN_DEADLINE
) -> mlmd.MetadataStore:
    """The MLMD store of `target`; on MySQL, creates database and tables if needed.

    Raises:
      MetadataError: a malformed target, an unreachable server, a refused
        login, or a transient error that lasted past `deadline` seconds.
    """
    config = connection_config(target, readonly)
    if not is_mysql(target):
        return mlmd.MetadataStore(config)
    _check_reachable(config.mysql, target)
    try:
        return retry(mlmd.MetadataStore, config, deadline=deadline)
    except RuntimeError as e:
        if "mysql_real_connect failed" in str(e):
            raise MetadataError(
                f"the MySQL server refused ML Metadata {redact(target)} (user "
                f"{config.mysql.user!r}: wrong password, or no right to create or use "
                f"database {config.mysql.database!r}?)"
            ) from None
        raise MetadataError(f"ML Metadata {redact(target)}: {e}") from None

"""A throwaway MariaDB server for tests: temp datadir, loopback, OS-chosen port.

`MariaDB.start()` initialises a data directory with `mariadb-install-db`,
starts `mariadbd` on 127.0.0.1 (a port the OS just handed out; retried on a
clash) and a unix socket, creates user `taxi` (password `taxi-pw`) with all
privileges, and waits (bounded) until it answers. `stop()` shuts it down and
removes everything. Each test uses its own database name, so tests sharing one
server share no state.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

USER, PASSWORD = "taxi", "taxi-pw"
START_TIMEOUT = 300


def binaries() -> tuple[str, str] | None:
    """(mariadb-install-db, mariadbd) or None when MariaDB is not installed."""
    install = shutil.which("mariadb-install-db")
    server = shutil.which("mariadbd") or (
        "/usr/sbin/mariadbd" if os.path.exists("/usr/sbin/mariadbd") else None
    )
    return (install, server) if install and server else None


def _die_with_parent() -> None:
    """In the child: SIGTERM when the test process dies, even by a crash."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MariaDB:
    def __init__(self):
        # Short path: a unix socket path must stay under 108 bytes.
        self.root = tempfile.mkdtemp(prefix="taxi-mdb-")
        self.datadir = os.path.join(self.root, "data")
        self.socket = os.path.join(self.root, "mysqld.sock")
        self.log = os.path.join(self.root, "mysqld.log")
        self.port = None
        self.process = None

    def url(self, database: str | None = None, via_socket: bool = False) -> str:
        """mysql:// URL of a fresh database (or `database`)."""
        database = database or f"t_{uuid.uuid4().hex[:12]}"
        if via_socket:
            return f"mysql://{USER}:{PASSWORD}@localhost/{database}?socket={self.socket}"
        return f"mysql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def start(self) -> MariaDB:
        install, server = binaries()
        init = os.path.join(self.root, "init.sql")
        with open(init, "w") as f:
            f.write(
                f"CREATE USER IF NOT EXISTS '{USER}'@'%' IDENTIFIED BY '{PASSWORD}';\n"
                f"CREATE USER IF NOT EXISTS '{USER}'@'localhost' IDENTIFIED BY '{PASSWORD}';\n"
                f"GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'%';\n"
                f"GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'localhost';\n"
            )
        subprocess.run(
            [
                install,
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--user=" + ("root" if os.getuid() == 0 else os.environ.get("USER", "")),
            ],
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT,
        )
        for _ in range(5):  # another process may take the port between bind and listen
            self.port = _free_port()
            self.process = subprocess.Popen(
                [
                    server,
                    "--no-defaults",
                    f"--datadir={self.datadir}",
                    f"--socket={self.socket}",
                    f"--port={self.port}",
                    "--bind-address=127.0.0.1",
                    f"--pid-file={os.path.join(self.root, 'mysqld.pid')}",
                    f"--log-error={self.log}",
                    f"--init-file={init}",
                    "--skip-name-resolve",
                    "--innodb-buffer-pool-size=32M",
                    "--innodb-log-file-size=16M",
                    "--max-connections=200",
                    *(["--user=root"] if os.getuid() == 0 else []),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
            if self._wait_ready():
                return self
            self._kill()
        raise RuntimeError(f"mariadbd did not start; log: {self._log_tail()}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if os.path.exists(self.socket) and self._answers():
                return True
            time.sleep(0.2)
        return False

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                return bool(s.recv(4))  # the server's greeting packet
        except OSError:
            return False

    def _log_tail(self) -> str:
        try:
            with open(self.log) as f:
                return f.read()[-2000:]
        except OSError:
            return "(no log)"

    def _kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)

    def stop(self) -> None:
        self._kill()
        shutil.rmtree(self.root, ignore_errors=True)

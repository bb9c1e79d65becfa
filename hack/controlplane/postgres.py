"""A throw-away PostgreSQL server on loopback, from the Debian package's binaries, for tests and benchmarks.

Like the control plane (``controlplane.cluster``): a free port, a data directory under one work directory, a log
file whose tail is shown when the server fails, and PR_SET_PDEATHSIG so the postmaster dies with the Python process
that started it (its backends follow the postmaster), even after a SIGKILL. fsync stays on: tests measure the
store as production runs it.

PostgreSQL refuses to run as root. When we are root (CI containers, this machine) initdb and the server run as the
``postgres`` system user the Debian package creates (else ``nobody``), with the work directory handed to that user;
the Python side only ever talks to the server over TCP with a generated password (scram-sha-256).
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from controlplane.cluster import free_port, log_tail

INSTALL_HINT = (
    "PostgreSQL server binaries not found (looked for /usr/lib/postgresql/*/bin/initdb and initdb on PATH): "
    "install the Debian package `postgresql` (apt-get install postgresql; `make test` / hack/bootstrap.sh does "
    "it when run as root), or set WEBHOOK_OPERATOR_PG_BIN to a directory holding initdb and postgres"
)
_PR_SET_PDEATHSIG = 1


class PostgresError(RuntimeError):
    """The server could not be set up or started; the message shows the tail of its log."""


def find_bindir() -> Path:
    """The newest installed server's bin directory (or ``$WEBHOOK_OPERATOR_PG_BIN``)."""
    explicit = os.environ.get("WEBHOOK_OPERATOR_PG_BIN")
    if explicit:  # only what was asked for: a wrong setting must not silently run another server
        candidates = [explicit]
    else:
        versions = glob.glob("/usr/lib/postgresql/*/bin")
        candidates = sorted(versions, key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0,
                            reverse=True)  # fmt: skip
        on_path = shutil.which("initdb")
        if on_path:
            candidates.append(str(Path(on_path).parent))
    for candidate in candidates:
        if (Path(candidate) / "initdb").is_file() and (Path(candidate) / "postgres").is_file():
            return Path(candidate)
    raise PostgresError(INSTALL_HINT)


def _unprivileged_user() -> pwd.struct_passwd | None:
    """Who runs the server: None (ourselves) unless we are root, which PostgreSQL refuses."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PostgresError("running as root and neither a `postgres` nor a `nobody` user exists to run PostgreSQL")


def _preexec(user: pwd.struct_passwd | None) -> None:
    """In the child: drop root (if we are root), then ask to die with the parent. The order matters: changing
    the user clears the parent-death signal."""
    if user is not None:
        os.setgroups([])
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGINT)  # SIGINT: PostgreSQL's fast shutdown


@dataclass
class PostgresServer:
    """Start with ``start()``, stop with ``stop()``; ``dsn(database)`` names a database on it."""

    workdir: Path
    user: str = "wo_test"
    password: str = ""
    port: int = 0

    def __post_init__(self) -> None:
        self.password = self.password or secrets.token_urlsafe(18)
        self.bindir = find_bindir()
        self.datadir = self.workdir / "data"
        self.log = self.workdir / "postgres.log"
        self._runas = _unprivileged_user()
        self._proc: subprocess.Popen[bytes] | None = None

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run(argv, capture_output=True, preexec_fn=lambda: _preexec(self._runas), cwd=self.workdir,
                              timeout=120, check=False)  # fmt: skip
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")[-3000:]
            raise PostgresError(f"{argv[0]} failed with code {done.returncode}:\n{output}")

    def start(self, timeout: float = 60.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o700)
        pwfile = self.workdir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._runas is not None:
            for path in (self.workdir, pwfile):
                os.chown(path, self._runas.pw_uid, self._runas.pw_gid)
        self._run([str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", self.user, f"--pwfile={pwfile}",
                   "--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-instructions",
                   "--no-sync"])  # a throw-away cluster: the server itself runs with fsync on  # fmt: skip
        pwfile.unlink()
        self.port = self.port or free_port()
        self.launch(timeout)

    def launch(self, timeout: float = 60.0) -> None:
        """Run the server on the existing data directory and port: ``start()`` after ``initdb``, and a restart
        after ``stop()`` (a database outage in a test: the same address, the same data, clients reconnect)."""
        if self._proc is not None and self._proc.poll() is None:
            raise PostgresError("PostgreSQL is already running")
        since = self.log.stat().st_size if self.log.exists() else 0  # a restart: its log already says "ready"
        handle = self.log.open("ab")
        self._proc = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(self.datadir), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.workdir}",
             "-c", "fsync=on", "-c", "max_connections=200", "-c", "shared_buffers=32MB"],
            stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=lambda: _preexec(self._runas), cwd=self.workdir,
        )  # fmt: skip
        handle.close()
        if self._runas is not None:
            os.chown(self.log, self._runas.pw_uid, self._runas.pw_gid)
        self._wait_ready(timeout, since)

    def _wait_ready(self, timeout: float, since: int = 0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                if b"ready to accept connections" in self.log.read_bytes()[since:]:
                    return
            time.sleep(0.1)
        raise PostgresError(f"PostgreSQL not ready after {timeout:.0f} s; last lines of {self.log}:\n"
                            f"{log_tail(self.log)}")  # fmt: skip

    def check_alive(self) -> None:
        code = self._proc.poll() if self._proc is not None else None
        if code is not None:
            raise PostgresError(f"PostgreSQL exited with code {code}; last lines of {self.log}:\n{log_tail(self.log)}")

    def stop(self, timeout: float = 30.0, *, immediate: bool = False) -> None:
        """Fast shutdown (sessions ended, a checkpoint written: a restart needs no recovery), or ``immediate``
        (no checkpoint: a crash as far as the data directory knows; for a server whose files are thrown away)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGQUIT if immediate else signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

"""Throwaway PostgreSQL and Redis servers from the system binaries (no Docker).

PostgreSQL refuses to run as root, so when we are root its commands run as ``postgres`` through
``runuser``; its data directory comes from ``tempfile.mkdtemp()`` (pytest's own temp dirs are
0700, out of that user's reach) and is chowned to it. Both listen on a free loopback port.
Used by the integration tests' fixtures and by the benchmarks.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (apt-get install postgresql)")
    return found[-1]


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass
class PostgresServer:
    """A running throwaway cluster; ``superuser`` connects with trust auth."""

    port: int
    datadir: Path
    superuser: str

    def url(self, user: str | None = None, database: str = "postgres", driver: str = "asyncpg") -> str:
        """An SQLAlchemy URL for ``user`` (the superuser by default) on ``database``."""
        return f"postgresql+{driver}://{user or self.superuser}@127.0.0.1:{self.port}/{database}"

    def socket_url(self, user: str | None = None, database: str = "postgres") -> str:
        """The same over the Unix socket (cheaper per round trip than TCP)."""
        return f"postgresql+asyncpg://{user or self.superuser}@/{database}?host={self.datadir}&port={self.port}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` as the superuser; its output."""
        out = subprocess.run(
            _as_postgres(
                [
                    _pg_bin("psql"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    self.superuser,
                    "-d",
                    database,
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-qAtc",
                    sql,
                ]
            ),
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout

    def restart(self) -> None:
        """Restart the cluster at once (``immediate``: every backend is terminated, as in a crash)."""
        subprocess.run(
            _as_postgres(
                [
                    _pg_bin("pg_ctl"),
                    "-D",
                    str(self.datadir / "data"),
                    "-l",
                    str(self.datadir / "log"),
                    "-m",
                    "immediate",
                    "-w",
                    "-t",
                    "30",
                    "restart",
                ]
            ),
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        """Stop the cluster and remove its files."""
        subprocess.run(
            _as_postgres([_pg_bin("pg_ctl"), "-D", str(self.datadir / "data"), "-m", "immediate", "-w", "stop"]),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(self.datadir, ignore_errors=True)


def start_postgres(*, durable: bool = False, settings: dict[str, str] | None = None) -> PostgresServer:
    """Start a cluster. ``durable=False`` turns fsync off (tests); True keeps fsync and
    synchronous_commit on (benchmarks)."""
    root = Path(tempfile.mkdtemp(prefix="flowdeck-pg-"))
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
    superuser = "postgres"
    subprocess.run(
        _as_postgres([_pg_bin("initdb"), "-D", str(root / "data"), "-A", "trust", "-U", superuser, "-E", "UTF8"]),
        check=True,
        capture_output=True,
    )
    port = free_port()
    options = {
        "listen_addresses": "127.0.0.1",
        "port": str(port),
        "unix_socket_directories": str(root),
        "max_connections": "200",
        "shared_buffers": "128MB",
    }
    if durable:
        options.update(fsync="on", synchronous_commit="on", full_page_writes="on")
    else:
        options.update(fsync="off", synchronous_commit="off", full_page_writes="off")
    options.update(settings or {})
    opts = " ".join(f"-c {k}={v}" for k, v in options.items())
    subprocess.run(
        _as_postgres(
            [
                _pg_bin("pg_ctl"),
                "-D",
                str(root / "data"),
                "-o",
                opts,
                "-l",
                str(root / "log"),
                "-w",
                "-t",
                "30",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    return PostgresServer(port, root, superuser)


@dataclass
class RedisServer:
    """A running throwaway redis-server without persistence."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        """Its ``redis://`` URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        """Stop it."""
        self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def redis_ping(host: str, port: int) -> bool:
    """Whether a Redis answers PING at ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=1) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis() -> RedisServer:
    """Start ``redis-server`` on a free loopback port, persistence off."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not redis_ping("127.0.0.1", port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("redis-server did not start")
        time.sleep(0.02)
    return RedisServer(port, process)

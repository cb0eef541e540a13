"""A real PostgreSQL (Debian package ``postgresql``) on loopback with its own data dir.

::

    with PostgreSQL(workdir).start() as pg:
        url = pg.url("results")      # postgresql://ctfleet@127.0.0.1:PORT/results (database created)

``initdb`` and ``postgres`` refuse to run as root: as root they run as the ``postgres``
OS user the package creates (through ``runuser``), on a data dir of its own under /tmp
(pytest's work dirs are root-only), removed on :meth:`stop`; as another user they run
as that user in ``workdir``. Authentication is ``trust`` on 127.0.0.1 only — a throwaway
cluster for tests and the demo, never a deployment (the SDR stack declares that one).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from ctfleet.lab.procs.service import Service, ServiceError, free_port

USER = "ctfleet"


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise ServiceError("PostgreSQL not found: install the Debian package postgresql (scripts/setup does)")
    return Path(found[-1]).parent


class PostgreSQL(Service):
    def __init__(self, workdir: Path, port: int | None = None):
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.bindir = _bindir()
        self.as_user: list[str] = []
        self.home = self.workdir
        if os.geteuid() == 0:
            try:
                pg = pwd.getpwnam("postgres")
            except KeyError:
                raise ServiceError("no 'postgres' OS user: install the Debian package postgresql (it creates the user)") from None
            self.as_user = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", "postgres", "--"]
            self.home = Path(tempfile.mkdtemp(prefix="ctfleet-pg-"))
            os.chown(self.home, pg.pw_uid, pg.pw_gid)
        self.data = self.home / "pgdata"
        self.sock = self.home / "sock"
        argv = self.as_user + [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                               "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.sock}",
                               "-c", "fsync=on", "-c", "max_connections=200", "-c", "shared_buffers=64MB"]
        super().__init__("postgresql", argv, self.workdir / "postgresql.log")

    def _initdb(self) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sock.mkdir(exist_ok=True)
        if self.as_user:
            pg = pwd.getpwnam("postgres")
            os.chown(self.sock, pg.pw_uid, pg.pw_gid)
        r = subprocess.run(self.as_user + [str(self.bindir / "initdb"), "-D", str(self.data), "-U", USER, "-A", "trust",
                                           "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise ServiceError(f"initdb failed ({r.returncode}): {r.stderr.strip()[-1500:]}")

    def start(self, timeout: float = 60.0) -> "PostgreSQL":  # type: ignore[override]
        self._initdb()

        def ready() -> bool:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                pass
            r = subprocess.run([str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", "postgres"],
                               capture_output=True, timeout=10)
            return r.returncode == 0

        super().start(ready, timeout)
        return self

    def create_database(self, name: str) -> None:
        r = subprocess.run([str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", "postgres",
                            "-v", "ON_ERROR_STOP=1", "-qc", f'CREATE DATABASE "{name}"'], capture_output=True, text=True, timeout=60)
        if r.returncode != 0 and "already exists" not in r.stderr:
            raise ServiceError(f"CREATE DATABASE {name} failed: {r.stderr.strip()}")

    def url(self, database: str) -> str:
        self.create_database(database)
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def password_user(self, name: str, password: str, owns: str | None = None) -> str:
        """A login role that must give ``password`` (scram-sha-256) over TCP, though every other
        role keeps ``trust``: its pg_hba.conf line goes first, then the server reloads. ``owns``: a
        database the role then owns (so it may create the schema there). Returns ``name``."""
        import re

        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name) or "'" in password:
            raise ValueError(f"role name {name!r}: lower-case letters, digits, _; password without quotes")
        sql = (f"DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') THEN CREATE ROLE {name} LOGIN; END IF; END$$; "
               f"SET password_encryption = 'scram-sha-256'; ALTER ROLE {name} WITH LOGIN PASSWORD '{password}'; "
               + (f'ALTER DATABASE "{owns}" OWNER TO {name};' if owns else ""))
        hba = self.data / "pg_hba.conf"
        line = f"host all {name} 127.0.0.1/32 scram-sha-256\n"
        text = hba.read_text()
        if line not in text:
            hba.write_text(line + text)
        for statement in (sql, "SELECT pg_reload_conf()"):
            r = subprocess.run([str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", "postgres",
                                "-v", "ON_ERROR_STOP=1", "-qc", statement], capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                raise ServiceError(f"password role {name}: {r.stderr.strip()}")
        return name

    def stop(self, grace: float = 10.0) -> None:
        super().stop(grace)
        if self.as_user and self.home != self.workdir:
            shutil.rmtree(self.home, ignore_errors=True)

    def kill(self) -> None:
        """Stop it the hard way (SIGKILL), as a crash would."""
        import signal

        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

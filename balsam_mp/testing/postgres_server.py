"""A throw-away PostgreSQL server for tests and benchmarks (not for production data).

    with PostgresServer() as server:          # initdb + pg_ctl start in a temp folder
        url = server.create_database("t1")    # postgresql://balsam@127.0.0.1:PORT/t1

It runs the server binaries of the machine (Debian's postgresql package:
/usr/lib/postgresql/N/bin, or `initdb` on PATH, or $BALSAM_PG_BINDIR). PostgreSQL refuses
to run as root, so as root it runs them as the `postgres` user the package creates. It
listens on 127.0.0.1 on a free port and on a socket in its folder, with password
authentication (scram-sha-256): `password` is what clients need, e.g. in $PGPASSWORD.
Durability is off (fsync) because its data dies with it.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

USER = "balsam"


class PostgresServerError(RuntimeError):
    """The server could not be started; the message says why and what to install."""


def find_bindir() -> Path:
    given = os.environ.get("BALSAM_PG_BINDIR")
    candidates = [given] if given else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                         key=lambda p: int(Path(p).parent.name) if
                         Path(p).parent.name.isdigit() else 0, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for folder in candidates:
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    raise PostgresServerError("no PostgreSQL server binaries (initdb, pg_ctl) found; install "
                              "them (Debian: apt-get install postgresql) or set "
                              "BALSAM_PG_BINDIR")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    def __init__(self, max_connections: int = 300) -> None:
        self.bindir = find_bindir()
        self.max_connections = max_connections
        self.folder: Path | None = None
        self.port = 0
        self.password = secrets.token_hex(16)
        self._run_as: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresServerError("running as root and there is no `postgres` user "
                                          "to run the server as (Debian's postgresql "
                                          "package creates it)") from None
            self._run_as = "postgres"

    def _run(self, *args: str, timeout: float = 120) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self._run_as:
            command = ["runuser", "-u", self._run_as, "--", *command]
        # the server must not look like a site's process (tests kill those by environment)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BALSAM_", "PG"))}
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                cwd=self.folder, env=env)
        if result.returncode != 0:
            raise PostgresServerError(f"{args[0]} failed ({result.returncode}): "
                                      f"{(result.stderr or result.stdout).strip()[-2000:]}")

    def start(self) -> PostgresServer:
        self.folder = Path(tempfile.mkdtemp(prefix="balsam-pg-"))
        if self._run_as:
            entry = pwd.getpwnam(self._run_as)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        pwfile = self.folder / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._run_as:
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        pwfile.chmod(0o600)
        try:
            self._run("initdb", "-D", str(self.folder / "data"), "-U", USER, "-E", "UTF8",
                      "--locale=C", "--auth=scram-sha-256", f"--pwfile={pwfile}", "--no-sync")
            pwfile.unlink()
            for attempt in range(3):  # the free port may be taken before the server binds
                self.port = _free_port()
                self._options = options = (f"-p {self.port} -c listen_addresses=127.0.0.1 "
                           f"-c unix_socket_directories={self.folder} -c fsync=off "
                           "-c synchronous_commit=off -c full_page_writes=off "
                           f"-c max_connections={self.max_connections}")
                try:
                    self._run("pg_ctl", "-D", str(self.folder / "data"), "-w", "-t", "60",
                              "-l", str(self.folder / "server.log"), "-o", options, "start")
                    break
                except PostgresServerError:
                    if attempt == 2:
                        raise
        except BaseException as exc:
            log = self.folder / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            self.stop()
            if isinstance(exc, PostgresServerError) and tail:
                raise PostgresServerError(f"{exc}\nserver log:\n{tail}") from None
            raise
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        """One statement as the superuser, outside a transaction (CREATE DATABASE)."""
        import psycopg

        with psycopg.connect(self.url(), password=self.password, autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, name: str) -> str:
        self.admin(f'CREATE DATABASE "{name}" TEMPLATE template0 STRATEGY FILE_COPY')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def restart(self) -> None:
        """Stop the server at once (every session is cut) and start it again."""
        self.halt()
        self.resume()

    def halt(self) -> None:
        """Stop the server at once (an outage: every session is cut, none is let in)."""
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop",
                  timeout=60)

    def resume(self) -> None:
        """Start a halted server again, on the same port."""
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-w", "-t", "60", "-l",
                  str(self.folder / "server.log"), "-o", self._options, "start")

    def stop(self) -> None:
        if self.folder is None:
            return
        if (self.folder / "data" / "postmaster.pid").exists():
            try:
                self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w",
                          "stop", timeout=60)
            except PostgresServerError:
                pass  # already gone
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

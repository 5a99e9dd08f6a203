"""A PostgreSQL server for the store tests.

- TEST_DATABASE_URL set: use that database (its user needs the CREATE privilege
  on it). Each test gets a fresh schema, dropped afterwards, selected through the
  URL's `?search_path=` (asyncpg passes unknown query parameters on as server
  settings), so tests never see each other's rows and no CREATEDB is needed.
- otherwise: start a throwaway cluster (initdb + pg_ctl) from the PostgreSQL
  binaries (Debian: /usr/lib/postgresql/<ver>/bin, or TEST_PG_BIN) in a temp
  directory on a free 127.0.0.1 port, once per test session; as root it runs as
  the `postgres` user (or `nobody`), because PostgreSQL refuses to run as root.
- neither: the postgres tests FAIL with INSTALL_HINT (never skip: CI installs it).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest

INSTALL_HINT = (
    "PostgreSQL is required for the postgres store tests and was not found. "
    "Install it with `sudo apt-get install -y postgresql` (Debian/Ubuntu; the tests then "
    "start their own throwaway cluster from /usr/lib/postgresql/<version>/bin), or set "
    "TEST_PG_BIN to the directory holding initdb and pg_ctl, or point TEST_DATABASE_URL at "
    "a database where its user may create schemas, e.g. "
    "postgresql://postgres:postgres@127.0.0.1:5432/postgres"
)


@dataclass(frozen=True)
class PgServer:
    admin_url: str  # the database the test schemas are created in

    def url_for(self, schema: str) -> str:
        parts = urlsplit(self.admin_url)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "search_path"]
        query.append(("search_path", schema))
        return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))

    async def fresh_url(self) -> str:
        """A URL whose connections see only a new, empty schema."""
        schema = f"threadwise_test_{uuid.uuid4().hex[:12]}"
        await self._execute(f'CREATE SCHEMA "{schema}"')
        return self.url_for(schema)

    async def discard(self, url: str) -> None:
        schema = dict(parse_qsl(urlsplit(url).query))["search_path"]
        await self._execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    async def _execute(self, sql: str) -> None:
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()


def find_pg_bin() -> Path | None:
    """The directory with initdb and pg_ctl: TEST_PG_BIN, Debian's layout, or PATH."""
    candidates: list[Path] = []
    if os.environ.get("TEST_PG_BIN"):
        candidates.append(Path(os.environ["TEST_PG_BIN"]))
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = [p for p in debian.iterdir() if p.name.replace(".", "").isdigit()]
        versions.sort(key=lambda p: [int(x) for x in p.name.split(".")], reverse=True)
        candidates += [v / "bin" for v in versions]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    return None


class Cluster:
    """A throwaway PostgreSQL cluster: trust auth, 127.0.0.1 only, fsync off (tests only)."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="threadwise-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self._user: tuple[int, int] | None = None
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            account = _service_account()
            self._user = (account.pw_uid, account.pw_gid)
            os.chown(self.root, account.pw_uid, account.pw_gid)

    def _run(self, *args: str) -> None:
        user, group = self._user if self._user else (None, None)
        result = subprocess.run(
            args, cwd=self.root, user=user, group=group, extra_groups=[] if user else None,
            capture_output=True, text=True, timeout=120, check=False,
        )
        if result.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise RuntimeError(
                f"{Path(args[0]).name} failed ({result.returncode}): "
                f"{result.stderr.strip()}\n{log[-2000:]}"
            )

    def start(self) -> str:
        self._run(
            str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions",
        )
        for _attempt in range(3):  # a free port can be taken between probe and bind
            self.port = _free_port()
            options = (
                f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=200"
            )
            try:
                self._run(
                    str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                    "-w", "-t", "60", "-o", options, "start",
                )
                return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
            except RuntimeError:
                if _attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        try:
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                      "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _service_account() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    pytest.fail("running as root, but there is no 'postgres' or 'nobody' user to run "
                "PostgreSQL as; " + INSTALL_HINT, pytrace=False)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


_SERVER_KEY = pytest.StashKey[PgServer]()


def provide_pg_server(config: pytest.Config) -> PgServer:
    """One server per test session, however many modules ask (cached on the config)."""
    if _SERVER_KEY in config.stash:
        return config.stash[_SERVER_KEY]
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        bin_dir = find_pg_bin()
        if bin_dir is None:
            pytest.fail(INSTALL_HINT, pytrace=False)
        cluster = Cluster(bin_dir)
        config.add_cleanup(cluster.stop)
        try:
            url = cluster.start()
        except RuntimeError as exc:
            pytest.fail(f"could not start a throwaway PostgreSQL: {exc}", pytrace=False)
    server = PgServer(admin_url=url)
    config.stash[_SERVER_KEY] = server
    return server


# Test modules import these fixtures; the *_fixture names keep linters from
# confusing the import with the test parameter of the same fixture name.
@pytest.fixture(scope="session", name="pg_server")
def pg_server_fixture(request: pytest.FixtureRequest) -> PgServer:
    return provide_pg_server(request.config)


@pytest.fixture(name="pg_url")
async def pg_url_fixture(pg_server: PgServer) -> AsyncIterator[str]:
    """A URL onto a fresh, empty schema for one test."""
    url = await pg_server.fresh_url()
    try:
        yield url
    finally:
        await pg_server.discard(url)

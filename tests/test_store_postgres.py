"""PostgreSQL-only behaviour: migrations under concurrency, clear errors, recovery."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import asyncpg
import pytest

from core.store import PostgresStore, SchemaTooNew, StoreUnavailable, open_store
from core.store.postgres_schema import MIGRATIONS
from core.types import NewMessage, ThreadKey
from tests.pg import PgServer, pg_server_fixture, pg_url_fixture  # noqa: F401  (fixtures)

THREAD = ThreadKey("discord", "G1", "C1", "111")


def said(text: str) -> NewMessage:
    return NewMessage(THREAD, "user", "U1", "Ada", text)


async def open_pg(url: str) -> PostgresStore:
    store = await open_store(url)
    assert isinstance(store, PostgresStore)
    return store


async def test_processes_starting_together_migrate_once(pg_url: str) -> None:
    stores = await asyncio.gather(*(open_pg(pg_url) for _ in range(5)))
    try:
        await stores[0].append(said("hello"))
        for store in stores:
            assert [m.text for m in await store.load_thread(THREAD)] == ["hello"]
        rows = await stores[0]._fetch("SELECT version FROM schema_version ORDER BY version")
        assert [r["version"] for r in rows] == list(range(1, len(MIGRATIONS) + 1))
    finally:
        for store in stores:
            await store.close()

    again = await open_pg(pg_url)  # reopening changes nothing and keeps the data
    try:
        rows = await again._fetch("SELECT count(*) AS n FROM schema_version")
        assert rows[0]["n"] == len(MIGRATIONS)
        assert [m.text for m in await again.load_thread(THREAD)] == ["hello"]
    finally:
        await again.close()


async def test_a_database_from_a_newer_threadwise_is_refused(pg_url: str) -> None:
    store = await open_pg(pg_url)
    await store._fetch("INSERT INTO schema_version (version) VALUES ($1)", len(MIGRATIONS) + 1)
    await store.close()
    with pytest.raises(SchemaTooNew, match="upgrade threadwise"):
        await open_store(pg_url)


async def test_an_unreachable_server_is_reported_without_the_password() -> None:
    url = "postgresql://bot:hunter2@127.0.0.1:1/threadwise"  # nothing listens on port 1
    with pytest.raises(StoreUnavailable) as caught:
        await open_store(url)
    message = str(caught.value)
    assert message.startswith("cannot connect to PostgreSQL at postgresql://bot:***@127.0.0.1:1/")
    assert "hunter2" not in message


async def test_a_missing_database_is_named_and_the_password_masked(
    pg_server: PgServer,
) -> None:
    admin = urlsplit(pg_server.admin_url)
    url = f"postgresql://postgres:s3cr3t@{admin.hostname}:{admin.port}/no_such_db"
    with pytest.raises(StoreUnavailable) as caught:
        await open_store(url)
    message = str(caught.value)
    assert 'database "no_such_db" does not exist' in message
    assert "s3cr3t" not in message and "postgres:***@" in message


async def test_connections_the_server_dropped_are_replaced_transparently(
    pg_url: str, pg_server: PgServer
) -> None:
    store = await open_pg(pg_url)
    try:
        await store.append(said("before"))
        conn = await asyncpg.connect(pg_server.admin_url)
        try:  # e.g. an idle-session timeout or a failover closed our sessions
            await conn.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND datname = current_database() "
                "AND backend_type = 'client backend'"
            )
        finally:
            await conn.close()
        assert [m.text for m in await store.load_thread(THREAD)] == ["before"]
    finally:
        await store.close()


async def test_a_database_that_goes_away_gives_a_clear_error_until_it_is_back(
    pg_url: str,
) -> None:
    target = urlsplit(pg_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    via_proxy = pg_url.replace(f":{target.port}/", f":{proxy.port}/")
    store = await open_pg(via_proxy.replace("postgres@", "postgres:pw@"))
    try:
        await store.append(said("before"))

        await proxy.stop()  # the database host disappears
        with pytest.raises(StoreUnavailable) as caught:
            await store.load_thread(THREAD)
        assert str(caught.value).startswith(
            f"cannot reach PostgreSQL at postgresql://postgres:***@127.0.0.1:{proxy.port}/"
        )

        await proxy.start()  # back on the same address
        assert [m.text for m in await store.load_thread(THREAD)] == ["before"]
    finally:
        await store.close()
        await proxy.stop()


class TcpProxy:
    """A cuttable TCP pipe in front of the database (what a network outage looks like)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.target_port, self.port = host, port, 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in self._writers:
            writer.close()
        self._writers.clear()
        await self._server.wait_closed()
        self._server = None

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        self._writers += [writer, up_writer]
        await asyncio.gather(
            _pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True
        )


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()

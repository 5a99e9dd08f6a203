"""A PostgreSQL server for the bench: TEST_DATABASE_URL, or a throwaway local cluster
started with the tests' helper (tests/pg.py). Each user gets a fresh schema."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tests.pg import Cluster, PgServer, find_pg_bin


class NoPostgres(RuntimeError):
    pass


@asynccontextmanager
async def postgres_server() -> AsyncIterator[PgServer]:
    admin = os.environ.get("TEST_DATABASE_URL")
    if admin:
        yield PgServer(admin_url=admin)
        return
    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise NoPostgres("no PostgreSQL binaries (initdb, pg_ctl) and no TEST_DATABASE_URL")
    cluster = Cluster(bin_dir)
    admin = await asyncio.to_thread(cluster.start)
    try:
        yield PgServer(admin_url=admin)
    finally:
        await asyncio.to_thread(cluster.stop)


@asynccontextmanager
async def fresh_database(server: PgServer) -> AsyncIterator[str]:
    """A URL onto a new, empty schema, dropped afterwards."""
    url = await server.fresh_url()
    try:
        yield url
    finally:
        await server.discard(url)

"""Attachment downloads: the bot token reaches only allow-listed hosts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from adapters.slack.files import LOGIN_PAGE_REASON, FileHostPolicy, SlackFileFetcher
from core.ports import FileRefused
from core.types import FileRef
from tests.fakes.slack_server import SlackServer

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def _fetcher(slack: SlackServer, http: httpx.AsyncClient, *hosts: str) -> SlackFileFetcher:
    return SlackFileFetcher(slack.cfg.bot_token, FileHostPolicy(hosts or (slack.file_host,)), http)


def _ref(f: dict[str, object]) -> FileRef:
    return FileRef(id=str(f["id"]), name=str(f["name"]), url=str(f["url_private_download"]),
                   declared_size=int(str(f["size"])), declared_type=str(f["mimetype"]))


async def test_an_allowed_host_gets_the_token_and_returns_the_bytes(
    slack_server: SlackServer, http: httpx.AsyncClient
) -> None:
    f = slack_server.host_file("shot.png", PNG, "image/png")
    data = await _fetcher(slack_server, http).fetch(_ref(f), max_bytes=10_000)
    assert data == PNG
    assert slack_server.files.requests[-1].authorization == f"Bearer {slack_server.cfg.bot_token}"


async def test_a_foreign_host_is_never_contacted(
    slack_server: SlackServer, http: httpx.AsyncClient
) -> None:
    f = slack_server.foreign_file("evil.png")
    with pytest.raises(FileRefused) as refused:
        await _fetcher(slack_server, http).fetch(_ref(f), max_bytes=10_000)
    assert "evil.png" in str(refused.value) and "SLACK_FILE_HOSTS" in refused.value.reason
    assert slack_server.foreign.requests == []


async def test_a_redirect_to_a_foreign_host_is_refused_before_the_hop(
    slack_server: SlackServer, http: httpx.AsyncClient
) -> None:
    f = slack_server.redirected_file("moved.png", slack_server.foreign.base_url + "/steal")
    with pytest.raises(FileRefused) as refused:
        await _fetcher(slack_server, http).fetch(_ref(f), max_bytes=10_000)
    assert "redirected" in refused.value.reason
    assert slack_server.foreign.requests == []
    assert slack_server.foreign.authorizations == []


async def test_a_redirect_within_allowed_hosts_is_followed(
    slack_server: SlackServer, http: httpx.AsyncClient
) -> None:
    real = slack_server.host_file("real.png", PNG, "image/png")
    f = slack_server.redirected_file("alias.png", str(real["url_private_download"]))
    assert await _fetcher(slack_server, http).fetch(_ref(f), max_bytes=10_000) == PNG


async def test_the_login_page_means_the_files_read_scope_is_missing(
    slack_server: SlackServer, http: httpx.AsyncClient
) -> None:
    slack_server.files.scopes.remove("files:read")
    f = slack_server.host_file("shot.png", PNG, "image/png")
    with pytest.raises(FileRefused) as refused:
        await _fetcher(slack_server, http).fetch(_ref(f), max_bytes=10_000)
    assert refused.value.reason == LOGIN_PAGE_REASON


async def test_size_caps_apply_before_and_during_the_download(
    slack_server: SlackServer, http: httpx.AsyncClient
) -> None:
    big = slack_server.host_file("big.png", PNG * 100, "image/png")
    with pytest.raises(FileRefused, match="limit"):
        await _fetcher(slack_server, http).fetch(_ref(big), max_bytes=1_000)
    assert slack_server.files.requests == []  # the declared size was enough to refuse
    lying = FileRef("F1", "lying.png", str(big["url_private_download"]), declared_size=10)
    with pytest.raises(FileRefused, match="limit"):
        await _fetcher(slack_server, http).fetch(lying, max_bytes=1_000)


def test_policy_matches_exact_hosts_and_ports_over_https() -> None:
    policy = FileHostPolicy(["files.slack.com", "127.0.0.1:8443", "files.example.org"])
    assert policy.allows(httpx.URL("https://files.slack.com/files-pri/x"))
    assert not policy.allows(httpx.URL("http://files.slack.com/x"))  # no token in clear text
    assert not policy.allows(httpx.URL("https://files.slack.com.evil.io/x"))
    assert not policy.allows(httpx.URL("https://evil.io/?files.slack.com"))
    assert not policy.allows(httpx.URL("https://user@files.slack.com/x"))
    assert policy.allows(httpx.URL("http://127.0.0.1:8443/x"))  # loopback may use http
    assert not policy.allows(httpx.URL("http://127.0.0.1:8444/x"))
    assert not policy.allows(httpx.URL("http://files.example.org/x"))

"""Private file downloads with the bot token, which only allow-listed hosts ever see.

Slack's `url_private_download` needs `Authorization: Bearer <bot token>`. A token
sent to the wrong host is a leaked credential, so every hop (the first URL and each
redirect, followed by hand) must match SLACK_FILE_HOSTS exactly, over https (http only
for loopback hosts, which tests and local proxies use). A hop that does not match is
refused, never requested.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

import httpx

from core.ports import FileRefused
from core.types import FileRef

log = logging.getLogger(__name__)

MAX_REDIRECTS = 3
UNSHARED_REASON = "Slack didn't share its contents with me"
LOGIN_PAGE_REASON = (
    "Slack returned a login page instead of the file — the app is probably missing "
    "the files:read scope"
)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB"


def _too_big(size: int, limit: int) -> str:
    return f"is {_mb(size)}; the limit is {_mb(limit)}"


class FileHostPolicy:
    """Which URLs may receive the bot token (DESIGN: exact host, and port when given)."""

    def __init__(self, hosts: Iterable[str]) -> None:
        self._hosts: set[str] = set()
        self._host_ports: set[tuple[str, int]] = set()
        for raw in hosts:
            entry = raw.strip().lower()
            if not entry:
                continue
            url = httpx.URL(f"https://{entry}")
            if url.port is not None:
                self._host_ports.add((url.host, url.port))
            else:
                self._hosts.add(url.host)

    def allows(self, url: httpx.URL) -> bool:
        host = url.host.lower()
        if url.scheme == "http":
            if not _is_loopback(host):
                return False
        elif url.scheme != "https":
            return False
        port = url.port or (443 if url.scheme == "https" else 80)
        listed = host in self._hosts or (host, port) in self._host_ports
        return listed and not url.userinfo


def _looks_like_login_page(ref: FileRef, content_type: str, head: bytes) -> bool:
    if ref.declared_type and "html" in ref.declared_type:
        return False  # someone shared an actual HTML file
    if content_type.split(";")[0].strip().lower() == "text/html":
        return True
    start = head[:64].lstrip().lower()
    return start.startswith((b"<!doctype html", b"<html"))


class SlackFileFetcher:
    def __init__(self, token: str, policy: FileHostPolicy, http: httpx.AsyncClient) -> None:
        self._token = token
        self._policy = policy
        self._http = http

    async def fetch(self, ref: FileRef, *, max_bytes: int) -> bytes:
        if not ref.url:  # announced by id only, and files.info did not reveal it
            raise FileRefused(ref.name, UNSHARED_REASON)
        if ref.declared_size is not None and ref.declared_size > max_bytes:
            raise FileRefused(ref.name, _too_big(ref.declared_size, max_bytes))
        try:
            url = httpx.URL(ref.url)
        except httpx.InvalidURL:
            raise FileRefused(ref.name, "its download link is not a valid URL") from None
        for hop in range(MAX_REDIRECTS + 1):
            if not self._policy.allows(url):
                where = "its download link points" if hop == 0 else "Slack redirected the download"
                raise FileRefused(
                    ref.name,
                    f"{where} to {url.host}, which is not an allowed file host "
                    "(SLACK_FILE_HOSTS), so I did not send the bot token there",
                )
            try:
                data, location = await self._get(ref, url, max_bytes)
            except httpx.HTTPError as exc:
                log.info("download of %s failed: %s", ref.name, type(exc).__name__)
                raise FileRefused(ref.name, "the download from Slack failed") from None
            if location is None:
                assert data is not None
                return data
            url = url.join(location)
        raise FileRefused(ref.name, f"the download was redirected more than {MAX_REDIRECTS} times")

    async def _get(
        self, ref: FileRef, url: httpx.URL, max_bytes: int
    ) -> tuple[bytes | None, str | None]:
        headers = {"Authorization": f"Bearer {self._token}"}
        async with self._http.stream("GET", url, headers=headers, follow_redirects=False) as resp:
            if resp.is_redirect:
                location = resp.headers.get("location")
                if not location:
                    raise FileRefused(ref.name, "Slack answered with a redirect without a target")
                return None, location
            if resp.status_code != 200:
                raise FileRefused(ref.name, f"Slack answered HTTP {resp.status_code}")
            declared = resp.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise FileRefused(ref.name, _too_big(int(declared), max_bytes))
            content_type = resp.headers.get("content-type", "")
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:  # stop reading: never buffer past the cap
                    raise FileRefused(ref.name, f"is larger than the limit of {_mb(max_bytes)}")
                chunks.append(chunk)
            data = b"".join(chunks)
        if _looks_like_login_page(ref, content_type, data):
            raise FileRefused(ref.name, LOGIN_PAGE_REASON)
        return data, None

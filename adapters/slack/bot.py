"""SlackBot: the running Slack adapter (Bolt app, Web API client, port, HTTP surface).

Socket Mode when SLACK_APP_TOKEN is set, HTTP mode (signed POST /slack/events)
otherwise; /healthz and /metrics are served on PORT in both modes.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import httpx
from prometheus_client import CollectorRegistry
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncServerErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.events import (
    BotIdentity,
    Service,
    SlackEventHandler,
    TailoredServices,
    TaskKeeper,
)
from adapters.slack.files import FileHostPolicy, SlackFileFetcher
from adapters.slack.history import SlackHistory, SlackReadSettings, load_read_settings
from adapters.slack.http import HttpSurface
from adapters.slack.metrics import SlackMetrics
from adapters.slack.not_enabled import NotEnabledNotice
from adapters.slack.port import SlackChatPort
from adapters.slack.rate import SlackRateGate
from adapters.slack.shared_files import SharedFiles
from adapters.slack.summary import SlackSummaries, register_summaries
from adapters.slack.users import DisplayNames
from core.channel_overrides import ChannelOverrides
from core.service import ConversationService
from core.settings import Settings
from core.summary_service import SummaryService

log = logging.getLogger(__name__)

SUGGESTED_PROMPTS = [
    {"title": "Summarize a discussion", "message": "Summarize the key points of this text:"},
    {"title": "Explain a screenshot", "message": "What does this screenshot show?"},
    {"title": "Draft a reply", "message": "Help me write a friendly, clear reply to:"},
]


WELCOME_TTL_S = 365 * 24 * 3600  # greet a person in the Messages tab once a year at most


class _SkipMessage(logging.Filter):
    def __init__(self, message: str) -> None:
        super().__init__()
        self._message = message

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != self._message


class SlackStartupError(Exception):
    """Slack rejected the configuration at start-up (one line, no secrets)."""


APP_TOKEN_FIX = (
    "Socket Mode needs the app-level token (xapp-…) with connections:write from Basic "
    "Information → App-Level Tokens; or unset SLACK_APP_TOKEN for HTTP mode"
)


def app_token_problem(token: str) -> str | None:
    """Why SLACK_APP_TOKEN cannot work, judged by its prefix alone (no network)."""
    if token.startswith("xapp-"):
        return None
    if token.startswith("xox"):  # a swapped SLACK_BOT_TOKEN is the usual mistake
        kind = {"xoxb-": "a bot token", "xoxp-": "a user token"}.get(token[:5], "an OAuth token")
        return f"SLACK_APP_TOKEN holds {kind} ({token[:5]}…): {APP_TOKEN_FIX}"
    return f"SLACK_APP_TOKEN is not an app-level token (xapp-…): {APP_TOKEN_FIX}"


BOT_TOKEN_FIX = "use the Bot User OAuth Token (xoxb-…) from OAuth & Permissions"


def bot_token_problem(token: str) -> str | None:
    """Why SLACK_BOT_TOKEN cannot work, judged by its prefix alone (no network)."""
    if token.startswith(("xoxb-", "xoxe.xoxb-")):  # the second: a rotating bot token
        return None
    kind = {"xapp-": "the app-level token", "xoxp-": "a user token"}.get(token[:5])
    if kind is not None:  # swapped with SLACK_APP_TOKEN, or the user token copied
        return f"SLACK_BOT_TOKEN holds {kind} ({token[:5]}…): {BOT_TOKEN_FIX}"
    return f"SLACK_BOT_TOKEN is not a bot token (xoxb-…): {BOT_TOKEN_FIX}"


def web_client(
    settings: Settings, metrics: SlackMetrics | None = None, *, with_token: bool = True,
    resend_lost: bool = True,
) -> AsyncWebClient:
    """resend_lost=False: a call whose answer was lost (reset, timeout, 5xx) is not sent
    again; for calls that create a message (see adapters/slack/lost_posts.py)."""
    if settings.slack_bot_token is None:
        raise SlackStartupError("SLACK_BOT_TOKEN is not set")
    problem = bot_token_problem(settings.slack_bot_token.get_secret_value())
    if problem is not None:
        raise SlackStartupError(problem)
    token = settings.slack_bot_token.get_secret_value() if with_token else None
    client = AsyncWebClient(token=token, base_url=settings.slack_api_url, timeout=30)
    # 429s wait for Retry-After (nothing was done); 5xx and dropped connections are
    # retried too, unless the call must not be carried out twice.
    handlers = metrics.retry_handlers() if metrics is not None else []
    if resend_lost:
        client.retry_handlers.extend(
            [*handlers, AsyncServerErrorRetryHandler(max_retry_count=2)]
        )
    else:
        client.retry_handlers[:] = handlers
    return client


class SlackBot:
    def __init__(
        self, settings: Settings, service: Service, *, registry: CollectorRegistry | None = None,
        host: str = "0.0.0.0", port: int | None = None, speed: float = 1.0,
        stream_idle_s: float = 30.0, summaries: SummaryService | None = None,
        read: SlackReadSettings | None = None, overrides: ChannelOverrides | None = None,
        tailored: TailoredServices | None = None,
    ) -> None:
        self.settings = settings
        self.service = service
        self.overrides = overrides or ChannelOverrides()
        self.tailored = tailored  # answers channels whose overrides change model or prompt
        self.registry = registry or CollectorRegistry()
        self.metrics = SlackMetrics(self.registry)
        self.client = web_client(settings, self.metrics)
        self.socket_mode = settings.slack_app_token is not None
        if not self.socket_mode and settings.slack_signing_secret is None:
            raise SlackStartupError("HTTP mode needs SLACK_SIGNING_SECRET (or set SLACK_APP_TOKEN)")
        if settings.slack_app_token is not None:
            problem = app_token_problem(settings.slack_app_token.get_secret_value())
            if problem is not None:
                raise SlackStartupError(problem)
        self.host = host
        self.listen_port = settings.port if port is None else port
        self.read = read or load_read_settings()
        self.gate = SlackRateGate(speed, self.read.rate_overrides())
        self.speed = speed
        if summaries is None and isinstance(service, ConversationService):
            summaries = SummaryService.for_service(service)
        self.summary_service = summaries
        self.summaries: SlackSummaries | None = None
        self.workspace_url = ""
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0))
        assert settings.slack_bot_token is not None
        fetcher = SlackFileFetcher(
            settings.slack_bot_token.get_secret_value(),
            FileHostPolicy(settings.slack_file_hosts), self.http,
        )
        self.port = SlackChatPort(
            self.client, fetcher, gate=self.gate, speed=speed, stream_idle_s=stream_idle_s,
            posts=web_client(settings, self.metrics, resend_lost=False),
        )
        self.tasks = TaskKeeper()
        self.metrics.track_in_flight(lambda: len(self.tasks))
        self.handler: SlackEventHandler | None = None
        self.bolt: AsyncApp | None = None
        self.surface: HttpSurface | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self._ready = False

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def url(self) -> str:
        assert self.surface is not None
        return f"http://127.0.0.1:{self.surface.port}"

    async def start(self) -> None:
        """Verify the token, then listen; /healthz turns 200 once events can arrive."""
        self.surface = HttpSurface(
            events=not self.socket_mode, registry=self.registry, metrics=self.metrics,
            ready=lambda: self._ready,
            signing_secret=(self.settings.slack_signing_secret.get_secret_value()
                            if self.settings.slack_signing_secret is not None else None),
        )
        # Listen first: /healthz answers 503 while Slack is still being reached.
        await self.surface.start(self.host, self.listen_port)
        me = await self._whoami()
        self.port.lost.bot_id = me.bot_id  # how a lost post of ours is recognised
        names = DisplayNames(self.client, self.gate, team=me.team_id)
        allowed = self.settings.slack_allowed_channels
        history = SlackHistory(self.client, self.gate, names, team=me.team_id,
                               workspace_url=self.workspace_url, read=self.read)
        self.handler = SlackEventHandler(
            service=self.service, port=self.port, names=names, me=me,
            allowed_channels=allowed,
            follow_threads=self.settings.slack_follow_threads, tasks=self.tasks,
            # A courtesy note goes once, through the client that does not resend a post
            # whose answer was lost: one note or none, never two.
            notice=NotEnabledNotice(self.port.posts, self.gate, allowed),
            shared=SharedFiles(self.client, self.gate), history=history,
            overrides=self.overrides, tailored=self.tailored,
        )
        if self.summary_service is not None:
            self.summaries = SlackSummaries(
                client=self.client, gate=self.gate, history=history,
                service=self.summary_service,
                allowed_channels=self.settings.slack_allowed_channels, speed=self.speed,
                overrides=self.overrides, lost=self.port.lost, posts=self.port.posts,
            )
        self.bolt = self._bolt_app(me)
        if self.socket_mode:
            assert self.settings.slack_app_token is not None
            app_token = self.settings.slack_app_token.get_secret_value()
            wss_url = await self._open_socket(app_token)
            self._socket = AsyncSocketModeHandler(self.bolt, app_token, web_client=self.client)
            # The SDK asks for a URL only when it has none: use the one just checked
            # rather than spend a second apps.connections.open (Tier 1).
            self._socket.client.wss_uri = wss_url
            await self._socket.connect_async()  # type: ignore[no-untyped-call]
        self.surface.bolt = self.bolt
        self._ready = True
        mode = "Socket Mode" if self.socket_mode else f"HTTP mode on port {self.surface.port}"
        log.info("Slack bot ready as %s in team %s (%s)", me.user_id, me.team_id, mode)

    async def _whoami(self) -> BotIdentity:
        try:
            resp = await self.client.auth_test()
        except SlackApiError as exc:
            raise SlackStartupError(
                f"Slack rejected SLACK_BOT_TOKEN: {exc.response.get('error')}"
            ) from None
        self.workspace_url = str(resp.get("url") or "")  # permalinks start with it
        return BotIdentity(
            user_id=str(resp.get("user_id")), bot_id=str(resp.get("bot_id") or ""),
            team_id=str(resp.get("team_id")),
        )

    async def _open_socket(self, app_token: str) -> str:
        """apps.connections.open once: a rejected token is a config error, not a retry loop.

        slack_sdk's SocketModeClient retries every failure forever (a traceback each
        time), so a wrong SLACK_APP_TOKEN would otherwise hang `threadwise slack`.
        """
        try:
            resp = await self.client.apps_connections_open(app_token=app_token)
        except SlackApiError as exc:
            raise SlackStartupError(
                f"Slack rejected SLACK_APP_TOKEN: {exc.response.get('error')} ({APP_TOKEN_FIX})"
            ) from None
        return str(resp["url"])

    def _bolt_app(self, me: BotIdentity) -> AsyncApp:
        secret = self.settings.slack_signing_secret
        assert self.settings.slack_bot_token is not None
        token = self.settings.slack_bot_token.get_secret_value()
        identity = AuthorizeResult(
            enterprise_id=None, team_id=me.team_id, bot_token=token, bot_id=me.bot_id,
            bot_user_id=me.user_id,
        )

        async def authorize() -> AuthorizeResult:
            # We verified the token at start-up; Bolt's default would call auth.test
            # again on (every concurrent) first request.
            return identity

        bolt_log = logging.getLogger("threadwise.slack.bolt")
        # Bolt reads SLACK_BOT_TOKEN from the environment itself when no token is
        # passed, then warns on every start that our client wins over it, which is the
        # intent (authorize supplies the token): drop that one warning.
        skip = _SkipMessage(warning_client_prioritized_and_token_skipped())
        bolt_log.addFilter(skip)
        try:
            app = AsyncApp(
                # Bolt's own client carries no token (authorize supplies it); our
                # listeners use self.client. Same API base and retry policy either way.
                client=web_client(self.settings, self.metrics, with_token=False),
                authorize=authorize,
                signing_secret=secret.get_secret_value() if secret is not None else None,
                request_verification_enabled=not self.socket_mode,
                # Our listeners only schedule work, so running them before the 200 is
                # cheap and keeps "accepted" meaning "scheduled".
                process_before_response=True,
                logger=bolt_log,
            )
        finally:
            bolt_log.removeFilter(skip)
        # Bolt logs the whole raw body of every badly signed request at INFO; we log
        # the rejection ourselves (adapters/slack/http.py) without the body.
        logging.getLogger("slack_bolt.RequestVerification").setLevel(logging.WARNING)
        handler = self.handler
        assert handler is not None
        metrics = self.metrics

        @app.event("app_mention")
        async def on_mention(event: dict[str, Any], body: dict[str, Any]) -> None:
            decision = handler.on_event(event, "app_mention", body.get("team_id"))
            metrics.events.labels("app_mention", decision.action).inc()

        @app.event("message")
        async def on_message(event: dict[str, Any], body: dict[str, Any]) -> None:
            decision = handler.on_event(event, "message", body.get("team_id"))
            metrics.events.labels("message", decision.action).inc()

        @app.event("assistant_thread_started")
        async def on_thread_started(event: dict[str, Any]) -> None:
            thread = event.get("assistant_thread") or {}
            channel, thread_ts = thread.get("channel_id"), thread.get("thread_ts")
            if not self._allowed(channel):  # prompts would invite an unanswered question
                metrics.events.labels("assistant_thread_started", "ignore").inc()
                return
            metrics.events.labels("assistant_thread_started", "answer").inc()
            if channel and thread_ts:
                self.tasks.spawn(self._suggest(str(channel), str(thread_ts)), "slack-prompts")

        @app.event("assistant_thread_context_changed")
        async def on_context_changed(event: dict[str, Any]) -> None:
            metrics.events.labels("assistant_thread_context_changed", "ignore").inc()

        @app.event("app_home_opened")
        async def on_home(event: dict[str, Any], body: dict[str, Any]) -> None:
            # Slack's suggested-prompt API needs an assistant thread, which the Messages
            # tab does not have: greet a person there once, with the same suggestions.
            channel, user = event.get("channel"), event.get("user")
            if event.get("tab") != "messages" or not channel or not user or (
                not self._allowed(channel)  # no invitation to a DM we would not answer
            ):
                metrics.events.labels("app_home_opened", "ignore").inc()
                return
            metrics.events.labels("app_home_opened", "answer").inc()
            team = str(body.get("team_id") or me.team_id)
            self.tasks.spawn(self._welcome(team, str(channel), str(user)), "slack-welcome")

        if self.summaries is not None:
            register_summaries(app, self.summaries, self.tasks)

        @app.event(re.compile(".*"))
        async def on_any_other_event(event: dict[str, Any]) -> None:
            # Without a listener Bolt answers 404, and Slack retries (and may turn off
            # event delivery) for an event we simply do not use: acknowledge and ignore.
            metrics.events.labels("other", "ignore").inc()
            log.debug("ignoring a %s event", str(event.get("type"))[:40])

        return app

    def _allowed(self, channel: object) -> bool:
        allowed = self.settings.slack_allowed_channels
        return not allowed or channel in allowed

    async def _welcome(self, team: str, channel: str, user: str) -> None:
        """Offer suggested prompts the first time someone opens the Messages tab."""
        if not await self.service.store.first_sighting(f"slack-home:{team}:{user}", WELCOME_TTL_S):
            return
        ideas = "\n".join(f"• *{p['title']}*: {p['message']}" for p in SUGGESTED_PROMPTS)
        text = (
            "Hi! Ask me anything here, or mention me in a channel and I'll answer in the "
            f"thread. Attach screenshots, photos or PDFs too. Some ideas:\n{ideas}"
        )
        try:
            await self.gate.acquire("chat.postMessage", team)
            await self.client.chat_postMessage(
                channel=channel, markdown_text=text, unfurl_links=False, unfurl_media=False
            )
        except SlackApiError as exc:
            log.info("could not greet in the Messages tab: %s", exc.response.get("error"))

    async def _suggest(self, channel: str, thread_ts: str) -> None:
        try:
            team = self.handler.me.team_id if self.handler is not None else ""
            await self.gate.acquire("assistant.threads.setSuggestedPrompts", team)
            await self.client.assistant_threads_setSuggestedPrompts(
                channel_id=channel, thread_ts=thread_ts, title="Try asking",
                prompts=SUGGESTED_PROMPTS,
            )
        except SlackApiError as exc:
            log.debug("suggested prompts unavailable: %s", exc.response.get("error"))

    async def idle(self) -> None:
        """Wait until every scheduled turn has finished (tests, graceful shutdown)."""
        await self.tasks.drain()

    async def aclose(self, *, grace_s: float = 0.0) -> None:
        self._ready = False
        if self._socket is not None:
            await self._socket.close_async()  # type: ignore[no-untyped-call]
        if self.surface is not None:
            await self.surface.stop()
        if grace_s > 0 and len(self.tasks):
            try:
                await asyncio.wait_for(self.tasks.drain(), grace_s)
            except TimeoutError:
                log.warning("stopping with %d turn(s) still running", len(self.tasks))
        await self.tasks.aclose()
        await self.port.aclose()
        await self.http.aclose()

"""The `threadwise` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from importlib import metadata

from bots.config import ConfigError, load_settings, require
from bots.logging_setup import configure_logging
from core.settings import Settings
from core.store.errors import StoreUnavailable

log = logging.getLogger("threadwise")

DESCRIPTION = """\
threadwise: an LLM assistant for Slack and Discord threads, over any
OpenAI-compatible API (GMI Cloud, OpenAI, or a local server).

Configuration comes from environment variables or a .env file in the current
directory; see the README for the full table. Start with `threadwise check`.
"""

EPILOG = """\
examples:
  threadwise chat                        talk to the configured model in this terminal
  threadwise check                       validate settings and reach every configured service
  threadwise manifest slack              print a Slack app manifest to paste
  threadwise slack                       run the Slack bot (Socket Mode if SLACK_APP_TOKEN is set)
  threadwise discord --invite-url        print the URL that adds the bot to a server
  threadwise discord                     run the Discord bot
  threadwise summarize LINK [--post]     summarize a Slack or Discord thread to stdout
  threadwise summarize LINK --hours 24   summarize the link's channel over the last day
"""


HOURS_RANGE = "1–168"  # core.summary_service.MAX_HOURS (a week); not imported: --help stays fast

CHAT_HELP = """\
A conversation with the configured model in this terminal, through the same core
and history as the bots (kept per --session in DATABASE_URL). Type a message and
press Enter; the answer streams in. Commands inside the chat:
  /image PATH   attach an image, PDF or text file to your next message
  /reset        forget this session's history and start over
  /help         list these commands
  /quit         leave (Ctrl-D works too)
"""

SLACK_HELP = """\
Run the Slack bot until SIGINT/SIGTERM (running replies get up to 20 s to finish).
Socket Mode when SLACK_APP_TOKEN (xapp-…) is set: no public URL needed. Otherwise
HTTP mode: Slack posts events to POST /slack/events on PORT (needs
SLACK_SIGNING_SECRET). Both modes serve GET /healthz and GET /metrics on PORT.
Needs SLACK_BOT_TOKEN (xoxb-…) and a model key (not for a loopback MODEL_BASE_URL).
"""

DISCORD_HELP = """\
Run the Discord bot until SIGINT/SIGTERM (running replies get up to 20 s to finish).
Needs DISCORD_TOKEN (Developer Portal → Bot → Token) with the Message Content intent
turned on, and a model key (not for a loopback MODEL_BASE_URL). GET /healthz and
GET /metrics are served on PORT. DISCORD_* variables: see the README.
"""

CHECK_HELP = """\
Validate every setting, open the database, send the model one tiny request and,
for each configured platform, check its tokens (and Slack's scopes). Prints one
line per check; exit 0 when all pass, 1 when any fails (a platform's own
settings included), 2 when the core settings cannot be read.
"""

MANIFEST_HELP = """\
Print a ready-to-paste app manifest (YAML) with exactly the scopes, events,
shortcuts and slash command threadwise uses. Paste it at api.slack.com/apps →
Create New App → From a manifest. It is set up for Socket Mode; its leading
comments say what to change for HTTP mode.
"""

SUMMARIZE_HELP = f"""\
Summarize a thread (or, with --hours, the link's channel) to stdout; progress goes
to stderr. Reading uses the bot's own token, so the bot must be able to read there:
  Slack link    https://WORKSPACE.slack.com/archives/C…/p…   needs SLACK_BOT_TOKEN
  Discord link  https://discord.com/channels/GUILD/CHANNEL[/MESSAGE]   needs DISCORD_TOKEN
--hours takes {HOURS_RANGE} hours.
"""


def _version() -> str:
    try:
        return f"threadwise {metadata.version('threadwise')}"
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "threadwise (version unknown: not installed as a package)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="threadwise", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    raw = argparse.RawDescriptionHelpFormatter
    sub.add_parser("slack", help="run the Slack bot (Socket Mode or HTTP mode on PORT)",
                   description=SLACK_HELP, formatter_class=raw)
    discord = sub.add_parser("discord", help="run the Discord bot", description=DISCORD_HELP,
                             formatter_class=raw)
    discord.add_argument("--invite-url", action="store_true",
                         help="print the bot's invite URL (minimal permissions) and exit")
    chat = sub.add_parser("chat", help="a terminal conversation with the configured model",
                          description=CHAT_HELP, formatter_class=raw)
    chat.add_argument("--session", default="default",
                      help="conversation name; history is kept per session (default: default)")
    summarize = sub.add_parser("summarize", help="summarize a Slack or Discord thread link",
                               description=SUMMARIZE_HELP, formatter_class=raw)
    summarize.add_argument("link", help="a Slack permalink or a Discord message/thread link")
    summarize.add_argument("--post", action="store_true", help="also post it in the thread")
    summarize.add_argument("--hours", type=float, default=None, metavar="N",
                           help=f"summarize the link's channel over its last N hours instead "
                                f"(N: {HOURS_RANGE})")
    sub.add_parser("check", help="validate the configuration and reach each configured service",
                   description=CHECK_HELP, formatter_class=raw)
    manifest = sub.add_parser("manifest", help="print a platform app manifest",
                              description=MANIFEST_HELP, formatter_class=raw)
    manifest.add_argument("platform", choices=["slack"], help="the platform (only slack)")
    return parser


def secrets_of(settings: Settings) -> list[str]:
    values = [settings.model_api_key, settings.slack_bot_token, settings.slack_app_token,
              settings.slack_signing_secret, settings.discord_token]
    found = [v.get_secret_value() for v in values if v is not None]
    if "@" in settings.database_url and "://" in settings.database_url:
        userinfo = settings.database_url.split("://", 1)[1].split("@", 1)[0]
        if ":" in userinfo:
            found.append(userinfo.split(":", 1)[1])
    return found


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    command = args.command
    if command == "chat":
        from adapters.console import run_console
        from bots.compose import open_core

        async with open_core(settings) as core:
            await run_console(core.service, session=args.session)
        return 0
    if command == "check":
        from bots.check import run_checks

        return await run_checks(settings)
    if command == "slack":
        from bots.slack_bot import run_slack

        await run_slack(settings)
        return 0
    if command == "discord":
        from bots.discord_bot import run_discord

        await run_discord(settings)
        return 0
    if command == "summarize":
        from bots.summarize_cli import run_summarize

        return await run_summarize(settings, args.link, post=args.post, hours=args.hours)
    raise AssertionError(command)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, where a closed pipe can still be handled
        return code
    except BrokenPipeError:
        # The reader went away (`threadwise manifest slack | head`): nothing went wrong.
        # Point stdout at /dev/null so that the interpreter's last flush fails no more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):
        # A bare `threadwise` is someone finding their way: the commands, not a usage error.
        parser.print_help(sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if args.command == "manifest":
        from bots.slack_bot import slack_manifest

        print(slack_manifest())
        return 0
    try:
        settings = load_settings()
        if args.command == "discord" and args.invite_url:
            from bots.discord_bot import invite_url_for

            print(asyncio.run(invite_url_for(settings)))
            return 0
        require(settings, args.command)
    except ConfigError as exc:
        print(f"threadwise: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format, secrets_of(settings))
    try:
        return asyncio.run(_run(args, settings))
    except ConfigError as exc:
        print(f"threadwise: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:  # e.g. a read-only or locked SQLite file at start-up
        print(f"threadwise: {exc.reason}", file=sys.stderr)
        return 2
    except OSError as exc:  # aiohttp's connection errors are OSErrors too
        # At start-up: the platform is unreachable (network, proxy, SLACK_API_URL /
        # DISCORD_API_URL) or PORT is taken. One line, not a traceback.
        print(f"threadwise {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

"""The log-hygiene scan (tests/fakes/log_capture.py) can fail: planted leaks are caught.

The scan itself runs over the whole suite; these tests prove it is not a no-op.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

import pytest

from tests.fakes import known_secrets
from tests.fakes.log_capture import HYGIENE, LeakScanner, LogHygiene
from tests.fakes.slack_events import event_callback, user_message

ROOT = Path(__file__).resolve().parent.parent

PLANTED = '''
import logging

log = logging.getLogger("core.service")


def test_logs_the_bot_token() -> None:
    log.warning("calling Slack with %s", "{token}")


def test_logs_a_raw_event_body() -> None:
    log.info("got %s", {body!r})


def test_prints_the_signing_secret_to_stderr() -> None:
    import sys
    print("secret={secret}", file=sys.stderr)


def test_stays_clean() -> None:
    log.info("answered a message in slack:T0TEAM:C0GENERAL:1700000000.000100")
'''


def slack_event_body() -> str:
    event = user_message(team="T0TEAM", channel="C0GENERAL", user="U0ALICE", text="hi",
                         ts="1700000000.000100")
    return json.dumps(event_callback(event, team_id="T0TEAM", bot_user_id="UBOT"))


async def test_an_inner_suite_that_leaks_fails_and_names_what_leaked(tmp_path: Path) -> None:
    (tmp_path / "test_planted.py").write_text(PLANTED.format(
        token=known_secrets.SLACK_BOT_TOKEN, body=slack_event_body(),
        secret=known_secrets.SLACK_SIGNING_SECRET,
    ))
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", "-p", "tests.fakes.log_capture", "-p", "no:cacheprovider",
        "-o", "asyncio_default_fixture_loop_scope=function", "-q", "--rootdir", str(tmp_path),
        str(tmp_path / "test_planted.py"),
        cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(60):
        out, _ = await child.communicate()
    report = out.decode()

    assert child.returncode == 1, report
    assert "4 passed, 3 errors" in report, report  # each leaking test errors at teardown
    assert "ERROR test_planted.py::test_logs_the_bot_token" in report
    assert "ERROR test_planted.py::test_logs_a_raw_event_body" in report
    assert "ERROR test_planted.py::test_prints_the_signing_secret_to_stderr" in report
    assert "ERROR test_planted.py::test_stays_clean" not in report
    assert "the Slack bot token in log record from core.service (WARNING)" in report
    assert "a raw Slack event body in log record from core.service (INFO)" in report
    assert "the Slack signing secret in captured stderr call" in report
    # The scan's own lines name the leak; they never repeat the secret itself.
    verdicts = [line for line in report.splitlines() if " in log record " in line
                or " in captured " in line]
    assert len(verdicts) == 3
    assert not any(known_secrets.SLACK_BOT_TOKEN in line or known_secrets.SLACK_SIGNING_SECRET
                   in line for line in verdicts)


def test_known_secrets_shapes_and_bodies_are_found_and_masked() -> None:
    scanner = LeakScanner()
    found = {leak.what for text in [
        f"token {known_secrets.DISCORD_TOKEN}",
        f"key={known_secrets.MODEL_API_KEY}",
        "revoked xoxb-1234-abcd",
        "headers {'Authorization': 'Bearer sk-abcdef123456'}",
        'followup to /webhooks/1/itoken-42/messages',
        slack_event_body(),
        '{"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true}',
        "{'channel': 'C1', 'markdown_text': 'hello'}",
        '{"content": "hi", "allowed_mentions": {"parse": []}}',
    ] for leak in scanner.scan(text, "test")}
    assert found == {
        "the Discord bot token", "the model API key", "a Slack token",
        "an Authorization header value", "a Discord interaction token",
        "a raw Slack event body", "a raw model request body", "a raw Slack Web API body",
        "a raw Discord body",
    }
    [leak] = scanner.scan(f"using {known_secrets.SLACK_APP_TOKEN} now", "somewhere")
    assert leak.excerpt == "using «secret» now"


def test_ordinary_operator_lines_are_not_leaks() -> None:
    scanner = LeakScanner()
    for line in [
        "Slack bot ready as UBOT in team T0TEAM (HTTP mode on port 3000)",
        "model failed: the model provider is rate limiting requests (429)",
        "rejected a Slack delivery with an invalid or stale signature",
        "connected to Discord as threadwise#0001 in 1 server(s)",
        "file refused in slack:T0TEAM:C0GENERAL:1.2: photo.png: is 100.0 MB",
    ]:
        assert scanner.scan(line, "test") == [], line


def test_the_whole_suite_is_being_watched(request: pytest.FixtureRequest) -> None:
    hygiene: LogHygiene = request.config.stash[HYGIENE]
    assert hygiene.handler in logging.getLogger().handlers
    before = hygiene.handler.records
    logging.getLogger("core.service").debug("a debug line from the product")
    assert hygiene.handler.records == before + 1  # DEBUG of our own code is scanned too

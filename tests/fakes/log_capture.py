"""Log hygiene for the whole test suite: no secret and no raw request body in any log.

Registered as a pytest plugin by tests/conftest.py. For the whole session it
- sets logger levels as `LOG_LEVEL=DEBUG` does in production (the most an operator
  can turn on; bots.logging_setup decides which libraries stay at INFO),
- attaches one handler to the root logger that scans every record, its traceback
  included, *before* any scrubbing: the product must not log secrets in the first place,
- scans what each test printed (stdout and stderr, which also catches subprocesses
  that inherit them), and output a test hands over with the `log_hygiene` fixture
  (stderr of a `threadwise` process it ran),
and fails the test during which a leak happened (an error at its teardown). Leaks
outside any test fail the session. Failure messages name what leaked, never the value.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, field

import pytest

from bots.logging_setup import configure_logging
from tests.fakes.known_secrets import SECRET_SHAPES, SECRETS

# Text that only appears when a whole request or event body is written out
# (as JSON or as a Python dict): envelope and parameter names no log line needs.
BODY_FRAGMENTS: dict[str, re.Pattern[str]] = {
    "a raw Slack event body": re.compile(
        r"""["'](?:api_app_id|client_msg_id|authorizations|event_time)["']\s*:"""
    ),
    "a raw Slack Web API body": re.compile(
        r"""["'](?:markdown_text|recipient_user_id|recipient_team_id|unfurl_links)["']\s*:"""
    ),
    "a raw model request body": re.compile(
        r"""["'](?:stream_options|prompt_cache_key|max_completion_tokens)["']\s*:"""
        r"""|["']messages["']\s*:\s*\[|data:image/[a-z]+;base64,"""
    ),
    "a raw Discord body": re.compile(
        r"""["'](?:allowed_mentions|message_reference|referenced_message)["']\s*:"""
    ),
}


@dataclass(frozen=True, slots=True)
class Leak:
    where: str  # e.g. "log record from core.service (WARNING)"
    what: str  # e.g. "the Slack bot token"
    excerpt: str  # the offending line with every known secret masked


class LeakScanner:
    """Finds known secrets, secret-shaped strings and raw bodies in text."""

    def __init__(
        self,
        secrets: Mapping[str, str] = SECRETS,
        shapes: Mapping[str, re.Pattern[str]] = SECRET_SHAPES,
        bodies: Mapping[str, re.Pattern[str]] = BODY_FRAGMENTS,
    ) -> None:
        self._secrets = dict(secrets)
        self._patterns = {**shapes, **bodies}

    def scan(self, text: str, where: str) -> list[Leak]:
        leaks: list[Leak] = []
        for line in text.splitlines():
            found = [name for value, name in self._secrets.items() if value in line]
            rest = self._mask_known(line)  # a known secret is not also reported by its shape
            found += [name for name, pattern in self._patterns.items() if pattern.search(rest)]
            leaks.extend(Leak(where, what, self.mask(line)) for what in dict.fromkeys(found))
        return leaks

    def _mask_known(self, line: str) -> str:
        for value in self._secrets:
            line = line.replace(value, "«secret»")
        return line

    def mask(self, line: str) -> str:
        line = self._mask_known(line)
        for name, pattern in SECRET_SHAPES.items():
            if name in self._patterns:
                line = pattern.sub("«secret»", line)
        return line if len(line) <= 240 else line[:239] + "…"


class HygieneHandler(logging.Handler):
    """Scans every record as it is emitted; keeps only the leaks."""

    def __init__(self, scanner: LeakScanner) -> None:
        super().__init__(logging.NOTSET)
        self.scanner = scanner
        self.leaks: list[Leak] = []
        self.records = 0
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)  # message plus any traceback
        except Exception:
            text = f"{record.msg!r} {record.args!r}"  # a broken record is still scanned
        self.records += 1
        where = f"log record from {record.name} ({record.levelname})"
        self.leaks.extend(self.scanner.scan(text, where))


@dataclass
class LogHygiene:
    """Session state: the handler, and what each test has not been charged for yet."""

    handler: HygieneHandler
    scanner: LeakScanner
    outside_tests: list[Leak] = field(default_factory=list)
    saved_levels: dict[str, int] = field(default_factory=dict)
    saved_handlers: list[logging.Handler] = field(default_factory=list)

    def check_output(self, text: str, origin: str) -> None:
        """Scan output a test captured itself (e.g. a subprocess's stderr)."""
        self.handler.leaks.extend(self.scanner.scan(text, origin))

    def take(self) -> list[Leak]:
        leaks, self.handler.leaks = self.handler.leaks, []
        return leaks


HYGIENE = pytest.StashKey[LogHygiene]()


def _production_debug_levels() -> tuple[dict[str, int], list[logging.Handler]]:
    """Apply the product's own logging policy at DEBUG, keeping pytest's handlers."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    levels = {name: lg.level for name, lg in logging.Logger.manager.loggerDict.items()
              if isinstance(lg, logging.Logger)}
    levels[""] = root.level
    configure_logging("DEBUG", "text", ())
    root.handlers[:] = handlers  # only the levels were wanted, not its stderr handler
    # bots.slack_bot quiets these when `threadwise slack` starts; tests that build the
    # bot in-process skip that step, so apply it here as the process would.
    for name in ("slack_sdk", "slack_bolt", "threadwise.slack.bolt"):
        logging.getLogger(name).setLevel(logging.INFO)
    return levels, handlers


def pytest_configure(config: pytest.Config) -> None:
    scanner = LeakScanner()
    handler = HygieneHandler(scanner)
    levels, handlers = _production_debug_levels()
    logging.getLogger().addHandler(handler)
    config.stash[HYGIENE] = LogHygiene(handler, scanner, saved_levels=levels,
                                       saved_handlers=handlers)


def pytest_unconfigure(config: pytest.Config) -> None:
    hygiene = config.stash.get(HYGIENE, None)
    if hygiene is None:
        return
    logging.getLogger().removeHandler(hygiene.handler)
    for name, level in hygiene.saved_levels.items():
        logging.getLogger(name or None).setLevel(level)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Anything logged between tests belongs to no test: set it aside for the session."""
    hygiene = item.config.stash.get(HYGIENE, None)
    if hygiene is not None:
        hygiene.outside_tests.extend(hygiene.take())


def describe(leaks: Iterable[Leak]) -> str:
    lines = ["secrets or raw request bodies reached the logs:"]
    lines += [f"  {leak.what} in {leak.where}: {leak.excerpt}" for leak in leaks]
    return "\n".join(lines)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if call.when != "teardown":
        return
    hygiene = item.config.stash.get(HYGIENE, None)
    if hygiene is None:
        return
    for title, content in report.sections:
        if "stdout" in title or "stderr" in title:
            hygiene.check_output(content, title.lower())
    leaks = hygiene.take()
    if leaks and report.outcome != "failed":
        report.outcome = "failed"
        report.longrepr = describe(leaks)


@pytest.fixture
def log_hygiene(request: pytest.FixtureRequest) -> LogHygiene:
    """Hand output the logs never saw (a subprocess's stderr) to the scanner."""
    return request.config.stash[HYGIENE]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    hygiene = session.config.stash.get(HYGIENE, None)
    if hygiene is None:
        return
    hygiene.outside_tests.extend(hygiene.take())
    if hygiene.outside_tests:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    hygiene = config.stash.get(HYGIENE, None)
    if hygiene is None or not hygiene.outside_tests:
        return
    terminalreporter.section("log hygiene", red=True)
    terminalreporter.write_line(describe(hygiene.outside_tests) + "\n(outside any test)")

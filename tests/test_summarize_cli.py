"""`threadwise summarize` as a real process against the Slack and Discord emulators."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

from adapters.discord.links import DiscordLink, jump_url, parse_discord_link
from adapters.slack.links import SlackLink, parse_slack_link, permalink
from tests.fakes.discord_server import DiscordServer
from tests.fakes.known_secrets import MODEL_API_KEY
from tests.fakes.model_server import FakeModelServer
from tests.fakes.slack_faults import DROP_AFTER
from tests.fakes.slack_server import SlackServer

ROOT = Path(__file__).resolve().parent.parent
CHANNEL = "C0GENERAL"
SUMMARY = ("### Key points\n- Standup moves to 10:00 [m1][m2]\n### Decisions\n- 10:00 [m2]\n"
           "### Action items\n- **Bob**: update the invite [m2]\n### Open questions\n- None.")


def env_for(tmp_path: Path, model: FakeModelServer, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MODEL_", "SLACK_", "DISCORD_", "GMI_", "OPENAI_", "DATABASE_"))}
    env.update({"DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "PYTHONPATH": str(ROOT),
                "MODEL_BASE_URL": model.base_url, "MODEL_API_KEY": MODEL_API_KEY,
                "MODEL_MAX_RETRIES": "0"})
    env.update(extra)
    return env


def slack_env(tmp_path: Path, model: FakeModelServer, slack: SlackServer) -> dict[str, str]:
    return env_for(tmp_path, model, SLACK_BOT_TOKEN=slack.cfg.bot_token,
                   SLACK_API_URL=slack.api_url)


async def summarize(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.cli", "summarize", *args, env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def standup_thread(slack: SlackServer) -> tuple[str, str]:
    slack.add_user("U0ALICE", "Alice")
    slack.add_user("U0BOB", "Bob")
    root = slack.user_post(CHANNEL, "U0ALICE", "Should we move standup to 10:00?")
    reply = slack.user_post(CHANNEL, "U0BOB", "Yes. I'll update the invite.", thread_ts=root.ts)
    return root.ts, reply.ts


async def test_a_slack_permalink_prints_the_summary_with_links_and_posts_nothing(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    root, reply = standup_thread(slack_server)
    model_server.reply(SUMMARY, usage={"prompt_tokens": 700, "completion_tokens": 60})
    link = slack_server.permalink(CHANNEL, reply, root)
    code, out, err = await summarize([link], slack_env(tmp_path, model_server, slack_server))
    assert code == 0, err
    assert out.startswith("🧵 **Summary of this thread**")
    assert f"**Bob**: update the invite [#2]({link})" in out
    assert f"[#1]({slack_server.permalink(CHANNEL, root)})" in out
    assert "760 tokens (700 in, 60 out)" in out
    assert "Summarizing 2 messages…" in err and "Bob" not in err  # progress, not content
    assert [m for m in slack_server.state.all_messages() if m.bot_id] == []
    assert {c.method for c in slack_server.calls} >= {"auth.test", "conversations.replies"}


async def test_post_puts_the_summary_in_the_slack_thread(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    root, _ = standup_thread(slack_server)
    model_server.reply(SUMMARY + "\n- someone wrote @everyone <!channel> [m1]")
    link = slack_server.permalink(CHANNEL, root)
    code, out, err = await summarize([link, "--post"],
                                     slack_env(tmp_path, model_server, slack_server))
    assert code == 0, err
    [posted] = slack_server.bot_replies(CHANNEL, root)
    assert posted.thread_ts == root and "**Bob**: update the invite [#2](" in posted.text
    assert slack_server.pings(CHANNEL, root) == []
    assert "Posted the summary in Slack." in err and "**Bob**" in out


async def test_a_discord_thread_link_prints_and_posts_with_jump_links(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    general = discord_server.channel_id()
    starter = discord_server.seed(general, "Should we move standup to 10:00?")
    thread = discord_server.add_thread("standup", from_message=starter)
    reply = discord_server.seed(thread, "Yes. I'll update the invite.", author="bob")
    model_server.reply(SUMMARY)
    env = env_for(tmp_path, model_server, DISCORD_TOKEN=discord_server.token,
                  DISCORD_API_URL=discord_server.api_url)
    guild = discord_server.guild_id
    # The link of the message the thread was opened from leads to the thread.
    link = f"https://canary.discord.com/channels/{guild}/{general}/{starter}"
    code, out, err = await summarize([link, "--post"], env)
    assert code == 0, err
    assert f"[#2](https://discord.com/channels/{guild}/{thread}/{reply})" in out
    assert f"[#1](https://discord.com/channels/{guild}/{general}/{starter})" in out
    [posted] = discord_server.bot_messages(thread)
    assert posted["content"] == out.strip()
    [write] = [w for w in discord_server.writes if w.kind == "post"]
    assert write.allowed_mentions is not None and write.allowed_mentions.get("parse") == []


async def test_bad_links_missing_tokens_and_unreadable_channels_are_one_clear_line(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    env = env_for(tmp_path, model_server)
    code, out, err = await summarize(["https://example.com/not-a-thread"], env)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "not a thread or message link" in err and "slack.com/archives" in err
    link = slack_server.permalink(CHANNEL, "1700000000.000100")
    code, _, err = await summarize([link], env)
    assert code == 2 and err.count("\n") == 1 and "SLACK_BOT_TOKEN is not set" in err
    slack_server.add_channel("C0OUTSIDE", "outside", bot_member=False)
    outside = slack_server.permalink("C0OUTSIDE", "1700000000.000100")
    code, out, err = await summarize([outside], slack_env(tmp_path, model_server, slack_server))
    assert code == 1 and out == ""
    assert re.search(r"threadwise: I'm not in this channel.*/invite @threadwise", err)
    assert model_server.requests == []


def test_link_formats() -> None:
    reply = parse_slack_link("https://acme.slack.com/archives/C0123ABC/p1700000001000002"
                             "?thread_ts=1700000000.000001&cid=C0123ABC")
    assert reply == SlackLink("C0123ABC", "1700000001.000002", "1700000000.000001")
    assert reply.root == "1700000000.000001"
    top = parse_slack_link("<https://acme.enterprise.slack.com/archives/G0PRIV/p1700000000000001>")
    assert top is not None and top.root == "1700000000.000001" and top.thread_ts is None
    assert parse_slack_link("https://evil.example/archives/C1/p1700000000000001") is None
    assert parse_slack_link("https://acme.slack.com/messages/C1") is None
    for host in ("discord.com", "ptb.discord.com", "canary.discord.com", "discordapp.com"):
        assert parse_discord_link(f"https://{host}/channels/111/222/333") == DiscordLink(
            "111", "222", "333")
    assert parse_discord_link("https://discord.com/channels/@me/222/333") == DiscordLink(
        None, "222", "333")
    assert parse_discord_link("https://discord.com/channels/111/222") == DiscordLink(
        "111", "222", None)
    assert parse_discord_link("https://discord.gg/invite") is None
    assert jump_url("111", "222", "333") == "https://discord.com/channels/111/222/333"
    assert permalink("https://acme.slack.com/", "C1", "1700000001.000002",
                     "1700000000.000001") == ("https://acme.slack.com/archives/C1/"
                                              "p1700000001000002?thread_ts=1700000000.000001&cid=C1")


async def test_summarize_post_whose_answer_was_lost_posts_once(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    root, _ = standup_thread(slack_server)
    model_server.reply(SUMMARY)
    slack_server.faults.add(DROP_AFTER, 1, methods={"chat.postMessage"})
    link = slack_server.permalink(CHANNEL, root)
    code, _, err = await summarize([link, "--post"],
                                   slack_env(tmp_path, model_server, slack_server))
    assert code == 0, err
    assert ("chat.postMessage", DROP_AFTER) in slack_server.faults.answered
    posted = [m.text[:30] for m in slack_server.bot_replies(CHANNEL, root)]
    assert len(posted) == 1, posted

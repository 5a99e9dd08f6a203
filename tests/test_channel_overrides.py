"""THREADWISE_CONFIG: per-channel system prompt, model, allow-lists and quota.

The file as an operator writes it, read by the real CLI and bots; the channels are
answered through the Slack and Discord emulators and the fake model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from core.channel_overrides import OverridesError, load_channel_overrides
from tests.fakes.cli_runner import Runner, clean_env
from tests.fakes.discord_harness import (
    answer_to,
    replies_to,
    response_text,
    start_bot,
    usage_reaches,
)
from tests.fakes.discord_payloads import MEMBER_PERMISSIONS
from tests.fakes.discord_server import DiscordServer
from tests.fakes.model_server import FakeModelServer
from tests.fakes.slack_harness import running_bot
from tests.fakes.slack_server import SlackServer

SUPPORT_PROMPT = "You are the on-call runbook assistant. Answer in one short paragraph."


def instructions(body: dict[str, Any]) -> str:
    """The system prompt a Chat Completions request carried."""
    [system] = [m for m in body["messages"] if m["role"] == "system"]
    return str(system["content"])


def written(tmp_path: Path, text: str) -> str:
    path = tmp_path / "threadwise.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


# --- the file ------------------------------------------------------------------------

def test_a_thread_takes_its_own_settings_and_the_rest_from_its_parent_channel(
    tmp_path: Path,
) -> None:
    overrides = load_channel_overrides(written(tmp_path, """
        [discord.112233445566778899]
        system_prompt = "parent prompt"
        model = "openai/gpt-5.5"
        daily_token_quota = 500

        [discord.998877665544332211]   # a thread of it
        model = "openai/gpt-5.2-chat"
    """))
    here = overrides.discord_places(("998877665544332211", "112233445566778899"))
    assert (here.model, here.system_prompt, here.daily_token_quota) == (
        "openai/gpt-5.2-chat", "parent prompt", 500)
    assert overrides.discord_places(("1", "2")).model is None  # no section: the environment


@pytest.mark.parametrize(("text", "problem"), [
    ("[slack.C0SUPPORT]\nsystem_prompt = 'x'\nmodle = 'y'\n",
     "[slack.C0SUPPORT.modle] is not a setting here (known: system_prompt, model, "
     "allowed_users)"),
    ("[slack.C0SUPPORT]\ndaily_token_quota = 10\n",
     "[slack.C0SUPPORT.daily_token_quota] is not a setting here"),
    ("[slack.general]\nmodel = 'm'\n",
     "[slack.general] is not a channel id such as C0123ABCD"),
    ("[discord.112233445566778899]\ndaily_token_quota = -1\n",
     "[discord.112233445566778899.daily_token_quota]: write 0 or more tokens (0 = no "
     "quota), e.g. daily_token_quota = 20000"),
    ("[discord.112233445566778899]\nsystem_prompt = '  '\n",
     "[discord.112233445566778899.system_prompt] is blank: write some text, e.g. "
     "system_prompt = "),
    ("[teams.T1]\nmodel = 'm'\n", "[teams] is not a setting here (known: [slack.<channel id>]"),
    ("[slack.C0SUPPORT]\nmodel = \n", "not valid TOML: Invalid value (at line 2, column 9)"),
    ("[discord.112233445566778899]\ndaily_token_quota = true\n",
     "[discord.112233445566778899.daily_token_quota]: write a whole number of tokens, "
     "without quotes, e.g. daily_token_quota = 20000"),
    ("[discord.112233445566778899]\nallowed_users = [\"alice\"]\n",
     "[discord.112233445566778899.allowed_users] holds 'alice', which is not a user id"),
    ("[discord.112233445566778899]\nallowed_users = [\"<@123456789012345678>\"]\n",
     "which is not a user id such as 123456789012345678"),
    ("[slack.C0123ABCD]\nallowed_users = [\"@alice\"]\n",
     "holds '@alice', which is not a member id such as U012AB3CD"),
    ("[discord]\nallowed_roles = [\"Helpers\"]\n",
     "[discord.allowed_roles] is not a [discord.<channel id>] section: put settings under "
     "a channel's own section"),
])
def test_a_mistake_in_the_file_is_named_with_where_it_is(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = written(tmp_path, text)
    with pytest.raises(OverridesError) as caught:
        load_channel_overrides(path)
    assert str(caught.value).startswith(f"THREADWISE_CONFIG ({path}): ")
    assert problem in str(caught.value)


@pytest.mark.parametrize(("text", "problem", "value"), [
    ('[slack.C0123ABCD]\nallowed_users = "U0SECRETISH"\n',
     '[slack.C0123ABCD.allowed_users]: write a list of member ids, e.g. '
     'allowed_users = ["U012AB3CD"]', "U0SECRETISH"),
    ('[discord.112233445566778899]\nallowed_users = "998877665544332211"\n',
     '[discord.112233445566778899.allowed_users]: write a list of user ids, e.g. '
     'allowed_users = ["123456789012345678"]', "998877665544332211"),
    ('[discord.112233445566778899]\nallowed_roles = "Moderators"\n',
     '[discord.112233445566778899.allowed_roles]: write a list of role ids or names, e.g. '
     'allowed_roles = ["Helpers"]', "Moderators"),
    ("[slack.C0123ABCD]\nallowed_users = [31337]\n",
     "[slack.C0123ABCD.allowed_users]: item 1 is not text: put each of the member ids in "
     "quotes", "31337"),
    ("[slack.C0123ABCD]\nallowed_users = ['U0SECRETISH', ' ']\n",
     "[slack.C0123ABCD.allowed_users]: item 2 is blank", "U0SECRETISH"),
    ('[discord.112233445566778899]\ndaily_token_quota = "31337"\n',
     "[discord.112233445566778899.daily_token_quota]: write a whole number of tokens, "
     "without quotes, e.g. daily_token_quota = 20000", "31337"),
    ("[discord.112233445566778899]\ndaily_token_quota = 7.25\n",
     "[discord.112233445566778899.daily_token_quota]: write a whole number of tokens",
     "7.25"),
    ("[slack.C0123ABCD]\nmodel = 31337\n",
     '[slack.C0123ABCD.model]: write text in quotes, e.g. model = "openai/gpt-5.5"', "31337"),
    ("[slack.C0123ABCD]\nsystem_prompt = ['be brief']\n",
     "[slack.C0123ABCD.system_prompt]: write text in quotes, e.g. system_prompt = ",
     "be brief"),
    ("[slack.C0123ABCD]\nmodle = 'my-model'\n",
     "[slack.C0123ABCD.modle] is not a setting here (known: system_prompt, model, "
     "allowed_users)", "my-model"),
    ("model = 'my-model'\n",
     "[model] is not a setting here (known: [slack.<channel id>], [discord.<channel id>]): "
     "settings go under a channel's own section", "my-model"),
    ("slack = 'C0SECRETISH'\n",
     "[slack] must hold sections, one per channel, e.g. [slack.C0123ABCD]", "C0SECRETISH"),
    ("[slack]\nC0123ABCD = 'my-model'\n",
     "[slack.C0123ABCD] must be a section: write [slack.C0123ABCD] on a line of its own",
     "my-model"),
])
def test_a_wrong_kind_of_value_is_explained_in_plain_words_without_echoing_it(
    tmp_path: Path, text: str, problem: str, value: str
) -> None:
    path = written(tmp_path, text)
    with pytest.raises(OverridesError) as caught:
        load_channel_overrides(path)
    message = str(caught.value)
    assert message.startswith(f"THREADWISE_CONFIG ({path}): ")
    assert problem in message, message
    for pydantic_wording in ("Input should", "should have at least", "valid tuple",
                             "Extra inputs", "valid dictionary", "instance of"):
        assert pydantic_wording not in message, message
    assert value not in message, message  # what was written is never repeated


def test_a_file_saved_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    path = tmp_path / "threadwise.toml"  # as some Windows editors save it
    path.write_bytes('[slack.C0123ABCD]\nmodel = "openai/gpt-5.5"\n'.encode("utf-8-sig"))
    assert load_channel_overrides(str(path)).slack_channel("C0123ABCD").model == (
        "openai/gpt-5.5")


def test_a_path_that_cannot_be_read_is_named_not_raised(tmp_path: Path) -> None:
    (tmp_path / "conf").write_text("", encoding="utf-8")  # a file where a folder should be
    path = str(tmp_path / "conf" / "threadwise.toml")
    with pytest.raises(OverridesError) as caught:
        load_channel_overrides(path)
    assert str(caught.value) == f"THREADWISE_CONFIG ({path}): cannot be read (Not a directory)"


def test_a_leading_tilde_means_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    written(tmp_path, '[slack.C0123ABCD]\nmodel = "openai/gpt-5.5"\n')
    overrides = load_channel_overrides("~/threadwise.toml")
    assert overrides.slack_channel("C0123ABCD").model == "openai/gpt-5.5"
    assert overrides.source == str(tmp_path / "threadwise.toml")
    with pytest.raises(OverridesError) as caught:  # a mistake names the expanded path
        load_channel_overrides("~/missing.toml")
    assert str(caught.value) == f"THREADWISE_CONFIG ({tmp_path / 'missing.toml'}): no such file"


async def test_a_tilde_path_written_in_dot_env_is_read_from_home(
    cli: Runner, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "threadwise.toml").write_text("[slack.C0SUPPORT]\nmodel = 'openai/gpt-5.5'\n",
                                          encoding="utf-8")
    (tmp_path / ".env").write_text("THREADWISE_CONFIG=~/threadwise.toml\n", encoding="utf-8")
    env = clean_env(tmp_path, HOME=str(home), MODEL_API_KEY="k",
                    MODEL_BASE_URL="http://127.0.0.1:9/v1")
    env.pop("THREADWISE_CONFIG", None)
    _, out, _ = await cli(["check"], env, cwd=tmp_path)
    assert (f"[ok  ] channel overrides: 1 Slack and 0 Discord channel(s) from "
            f"{home / 'threadwise.toml'}") in out, out


async def test_the_bots_refuse_to_start_on_a_bad_file_and_check_reports_it(
    cli: Runner, tmp_path: Path
) -> None:
    env = clean_env(tmp_path, MODEL_API_KEY="k", SLACK_BOT_TOKEN="xoxb-1",
                    SLACK_SIGNING_SECRET="s", SLACK_API_URL="http://127.0.0.1:9/api/",
                    THREADWISE_CONFIG=str(tmp_path / "missing.toml"))
    code, _, err = await cli(["slack"], env)
    assert code == 2, err
    assert "Traceback" not in err
    assert err.strip() == (f"threadwise: invalid configuration: THREADWISE_CONFIG "
                           f"({tmp_path / 'missing.toml'}): no such file")
    code, _, err = await cli(["discord"], {**env, "DISCORD_TOKEN": "abc.def.ghi"})
    assert code == 2 and "THREADWISE_CONFIG" in err and "no such file" in err, err

    (tmp_path / "conf").write_text("", encoding="utf-8")
    unreadable = str(tmp_path / "conf" / "threadwise.toml")
    code, out, _ = await cli(["check"], {**env, "THREADWISE_CONFIG": unreadable})
    assert code == 1 and "[FAIL] channel overrides: THREADWISE_CONFIG" in out
    assert "[ok  ] database" in out  # the other checks still ran

    good = written(tmp_path, "[slack.C0SUPPORT]\nmodel = 'openai/gpt-5.5'\n")
    code, out, _ = await cli(["check"], {**env, "THREADWISE_CONFIG": good,
                                         "MODEL_BASE_URL": "http://127.0.0.1:9/v1"})
    assert f"[ok  ] channel overrides: 1 Slack and 0 Discord channel(s) from {good}" in out
    # The file's model is tried too, not only MODEL_NAME.
    assert "[FAIL] model openai/gpt-5.5 (chat API at http://127.0.0.1:9/v1/)" in out


async def test_check_warns_of_a_section_the_allow_list_leaves_out(
    cli: Runner, tmp_path: Path
) -> None:
    config = written(tmp_path, "[slack.C0SUPPORT]\nmodel = 'openai/gpt-5.5'\n"
                               "[slack.C0GENERAL]\nsystem_prompt = 'Be brief.'\n")
    env = clean_env(tmp_path, MODEL_API_KEY="k", MODEL_BASE_URL="http://127.0.0.1:9/v1",
                    THREADWISE_CONFIG=config, SLACK_ALLOWED_CHANNELS="C0GENERAL")
    _, out, _ = await cli(["check"], env)
    [line] = [ln for ln in out.splitlines() if "channel overrides" in ln]
    assert line == (f"[ok  ] channel overrides: 2 Slack and 0 Discord channel(s) from {config}; "
                    "warning: THREADWISE_CONFIG has sections for C0SUPPORT, which "
                    "SLACK_ALLOWED_CHANNELS leaves out: they never apply")


# --- Slack ---------------------------------------------------------------------------

async def test_a_404_for_a_channels_model_names_that_model_for_the_operator(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = written(tmp_path, '[slack.C0SUPPORT]\nmodel = "openai/gpt-5.5-typo"\n')
    model_server.fail(404)
    with caplog.at_level(logging.WARNING):
        async with running_bot(slack_server, model_server, tmp_path, speed=10,
                               THREADWISE_CONFIG=config) as bot:
            asked = slack_server.user_post("C0SUPPORT", "U0ALICE", f"{slack_server.mention} hi")
            for event in asked.events:
                await slack_server.deliver(bot.url, event)
            await bot.idle()
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("model failed")]
    assert model_server.requests[0].body["model"] == "openai/gpt-5.5-typo"
    assert line.endswith("(is openai/gpt-5.5-typo spelled as the provider lists it? "
                         "(MODEL_NAME, or a channel's model in THREADWISE_CONFIG))")


async def test_a_slack_channel_answers_with_its_own_prompt_and_model_others_do_not(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.models.append("openai/gpt-5.5")
    config = written(tmp_path, f"""
        [slack.C0SUPPORT]
        system_prompt = "{SUPPORT_PROMPT}"
        model = "openai/gpt-5.5"
    """)
    for text in ("Restart the pod.", "Then check the logs.", "Hello!"):
        model_server.reply(text)
    async with running_bot(slack_server, model_server, tmp_path, speed=10,
                           THREADWISE_CONFIG=config) as bot:
        asked = slack_server.user_post("C0SUPPORT", "U0ALICE",
                                       f"{slack_server.mention} the API is down")
        for event in asked.events:
            await slack_server.deliver(bot.url, event)
        await bot.idle()
        follow = slack_server.user_post("C0SUPPORT", "U0ALICE", "and then?",
                                        thread_ts=asked.ts)
        for event in follow.events:
            await slack_server.deliver(bot.url, event)
        await bot.idle()
        elsewhere = slack_server.user_post("C0GENERAL", "U0ALICE", f"{slack_server.mention} hi")
        for event in elsewhere.events:
            await slack_server.deliver(bot.url, event)
        await bot.idle()

    support, support_again, general = (r.body for r in model_server.requests)
    assert [support["model"], support_again["model"]] == ["openai/gpt-5.5"] * 2
    assert instructions(support) == instructions(support_again) == SUPPORT_PROMPT
    assert general["model"] == "openai/gpt-5.4-mini"
    assert SUPPORT_PROMPT not in instructions(general)
    texts = [m.text for m in slack_server.bot_replies("C0SUPPORT", asked.ts)]
    assert texts == ["Restart the pod.", "Then check the logs."]


async def test_someone_a_slack_channel_does_not_allow_is_told_once_and_not_answered(
    slack_server: SlackServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    config = written(tmp_path, '[slack.C0ONCALL]\nallowed_users = ["U0ALICE"]\n')
    model_server.reply("Paging the on-call engineer.")
    async with running_bot(slack_server, model_server, tmp_path, speed=10,
                           THREADWISE_CONFIG=config) as bot:
        outsider = slack_server.user_post("C0ONCALL", "U0BOB", f"{slack_server.mention} help")
        again = slack_server.user_post("C0ONCALL", "U0BOB", f"{slack_server.mention} hello?",
                                       thread_ts=outsider.ts)
        member = slack_server.user_post("C0ONCALL", "U0ALICE", f"{slack_server.mention} page")
        for post in (outsider, again, member):
            for event in post.events:
                await slack_server.deliver(bot.url, event)
            await bot.idle()
        _, summary = await slack_server.slash_command(bot.url, channel="C0ONCALL",
                                                      user="U0BOB")
        await bot.idle()

    [notice] = slack_server.bot_replies("C0ONCALL", outsider.ts)
    assert notice.text.startswith("I only answer certain people in this channel")
    assert [m.text for m in slack_server.bot_replies("C0ONCALL", member.ts)] == [
        "Paging the on-call engineer."]
    assert len(model_server.requests) == 1  # Bob's two mentions never reached the model
    [refused] = slack_server.responses[summary]  # nor did his /summarize
    assert refused["text"].startswith("I only answer certain people in this channel")
    assert refused["response_type"] == "ephemeral"
    assert slack_server.calls_to("conversations.history") == []


# --- Discord -------------------------------------------------------------------------

async def test_a_discord_thread_inherits_its_channels_prompt_and_model_until_model_changes_it(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    model_server.models.extend(["openai/gpt-5.5", "openai/gpt-5.4"])
    help_desk = discord_server.channel_id("general")
    thread = discord_server.add_thread("printer", parent=help_desk)
    config = written(tmp_path, f"""
        [discord.{help_desk}]
        system_prompt = "{SUPPORT_PROMPT}"
        model = "openai/gpt-5.5"
    """)
    async with start_bot(discord_server, model_server, tmp_path, THREADWISE_CONFIG=config,
                         DISCORD_MODELS="openai/gpt-5.4") as running:
        first = await discord_server.user_says(thread, "the printer is on fire")
        await discord_server.until(lambda: bool(replies_to(discord_server, first)))
        shown = await response_text(
            discord_server, await discord_server.invoke_command("model", channel_id=thread))
        await response_text(discord_server, await discord_server.invoke_command(
            "model", {"name": "openai/gpt-5.4"}, channel_id=help_desk, author="root"))
        second = await discord_server.user_says(thread, "still burning")
        await discord_server.until(lambda: bool(replies_to(discord_server, second)))
        # MODEL_NAME is a choice too here, not "no choice": the file's model would win.
        back = await response_text(discord_server, await discord_server.invoke_command(
            "model", {"name": "openai/gpt-5.4-mini"}, channel_id=help_desk, author="root"))
        third = await discord_server.user_says(thread, "out now")
        await discord_server.until(lambda: bool(replies_to(discord_server, third)))
        elsewhere = await discord_server.user_says(discord_server.channel_id("random"), "hi")
        await discord_server.until(lambda: bool(replies_to(discord_server, elsewhere)))
        assert running.bot.models.offered == [
            "openai/gpt-5.4-mini", "openai/gpt-5.4", "openai/gpt-5.5"]

    assert "uses `openai/gpt-5.5`" in shown
    assert "now uses `openai/gpt-5.4-mini`" in back
    bodies = [r.body for r in model_server.requests]
    assert [b["model"] for b in bodies] == [
        "openai/gpt-5.5", "openai/gpt-5.4", "openai/gpt-5.4-mini", "openai/gpt-5.4-mini"]
    assert [instructions(b) == SUPPORT_PROMPT for b in bodies] == [True, True, True, False]


async def test_a_discord_channel_can_narrow_who_is_answered_and_its_daily_quota(
    discord_server: DiscordServer, model_server: FakeModelServer, tmp_path: Path
) -> None:
    staff = discord_server.channel_id("general")
    lounge = discord_server.channel_id("random")
    discord_server.state.add_role("Staff", MEMBER_PERMISSIONS, position=1)
    discord_server.add_user("erin", roles=["Members", "Staff"])
    config = written(tmp_path, f"""
        [discord.{staff}]
        allowed_roles = ["Staff"]

        [discord.{lounge}]
        daily_token_quota = 100
    """)
    usage = {"prompt_tokens": 80, "completion_tokens": 40}
    for text in ("Lounge answer.", "Staff answer."):
        model_server.reply(text, usage=usage)
    async with start_bot(discord_server, model_server, tmp_path, THREADWISE_CONFIG=config,
                         DISCORD_DAILY_TOKEN_QUOTA=1000) as running:
        member = await discord_server.user_says(staff, "may I?", author="alice")
        await answer_to(discord_server, await discord_server.user_says(
            lounge, "lounge question", author="erin"), "Lounge answer.")
        await usage_reaches(running, 120, user_id=discord_server.user("erin").id)
        over = await discord_server.user_says(lounge, "one more", author="erin")
        await discord_server.until(lambda: bool(replies_to(discord_server, over)))
        # The staff channel keeps DISCORD_DAILY_TOKEN_QUOTA, which still has room for Erin.
        await answer_to(discord_server, await discord_server.user_says(
            staff, "staff question", author="erin"), "Staff answer.")
        usage_here = await response_text(discord_server, await discord_server.invoke_command(
            "usage", channel_id=lounge, author="erin"))

    assert replies_to(discord_server, member) == []  # Members alone is not Staff
    [refusal] = replies_to(discord_server, over)
    assert "You've used your 100 tokens for today (120 so far)" in refusal["content"]
    assert "of your 100 daily quota" in usage_here
    assert len(model_server.requests) == 2

"""Slack adapter: Bolt (Socket Mode or signed HTTP events) → core Inbound; replies through
SlackChatPort (native streaming with a chat.update fallback). Entry point: SlackBot."""

from adapters.slack.bot import SlackBot, SlackStartupError
from adapters.slack.port import SlackChatPort

__all__ = ["SlackBot", "SlackChatPort", "SlackStartupError"]

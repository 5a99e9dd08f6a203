"""Reading Slack Web API failures."""

from __future__ import annotations

from slack_sdk.errors import SlackApiError


def api_error(exc: SlackApiError) -> str:
    """Slack's error code; an HTTP error page (a 5xx from a proxy) has no JSON to read."""
    data = exc.response.data
    if isinstance(data, dict):
        return str(data.get("error"))
    return f"HTTP {exc.response.status_code}"

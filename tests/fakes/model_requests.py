"""Reading what the model received: helpers over recorded Chat Completions bodies."""

from __future__ import annotations

import base64
import io
from typing import Any

from PIL import Image


def seen_texts(body: dict[str, Any]) -> list[str]:
    """Every text the model received in a Chat Completions request, in order."""
    texts: list[str] = []
    for message in body["messages"]:
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(p["text"] for p in content if p.get("type") == "text")
    return texts


def image_urls(body: dict[str, Any]) -> list[str]:
    """The data URLs of every image part in a Chat Completions request."""
    return [
        part["image_url"]["url"]
        for message in body["messages"]
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if part.get("type") == "image_url"
    ]


def image_sizes(body: dict[str, Any]) -> list[tuple[int, int]]:
    """Pixel sizes of every data-URL image anywhere in a request body (either API)."""
    sizes: list[tuple[int, int]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str) and node.startswith("data:image/"):
            raw = base64.b64decode(node.split(",", 1)[1])
            sizes.append(Image.open(io.BytesIO(raw)).size)

    walk(body)
    return sizes

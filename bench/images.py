"""Section 7: what a 12-megapixel photo costs as we send it, and as it would cost unprocessed.

Image tokens follow the tile rule for OpenAI's tile models (core.tokens): the provider
fits the image in 2048x2048, shrinks the short side to 768, then charges 85 + 170 per
512-px tile. So on tile models the token count of a large photo is the same whether or
not we shrink it; what shrinking saves is the bytes uploaded (base64, +33 %) on every
turn that re-sends the photo, and the 20 MB per-image limit.
"""

from __future__ import annotations

import base64
import io
import time
from dataclasses import dataclass

from PIL import Image, ImageChops

from core.media import normalise
from core.tokens import Tokenizer

PHOTO_SIZE = (4000, 3000)  # 12 megapixels, as a phone camera takes them


@dataclass(frozen=True)
class ImageRow:
    label: str
    width: int
    height: int
    bytes: int
    base64_bytes: int
    tokens: int
    seconds: float  # time to produce it (normalisation), 0 for the original


def synthetic_photo(size: tuple[int, int] = PHOTO_SIZE) -> bytes:
    """A photo-like JPEG: smooth colour regions plus sensor-like grain (~5 MB at 12 MP)."""
    w, h = size
    coarse = [
        Image.effect_noise((w // 40, h // 40), 60).resize((w, h), Image.Resampling.BICUBIC)
        for _ in range(3)
    ]
    grain = Image.effect_noise((w, h), 12)
    bands = [ImageChops.add(c, grain, scale=1.0, offset=-128) for c in coarse]
    out = io.BytesIO()
    Image.merge("RGB", bands).save(out, "JPEG", quality=90)
    return out.getvalue()


def b64_len(n: int) -> int:
    return 4 * ((n + 2) // 3)


def image_rows(photo: bytes) -> list[ImageRow]:
    with Image.open(io.BytesIO(photo)) as im:
        width, height = im.size
    rows = [ImageRow("original photo, sent unprocessed (detail high/auto)", width, height,
                     len(photo), b64_len(len(photo)),
                     Tokenizer.image_tokens(width, height, "high"), 0.0)]
    for detail in ("auto", "high", "low"):
        started = time.perf_counter()
        media = normalise("photo.jpg", photo, detail=detail)
        took = time.perf_counter() - started
        assert media.width is not None and media.height is not None
        rows.append(ImageRow(
            f"as threadwise sends it, MODEL_IMAGE_DETAIL={detail}", media.width, media.height,
            len(media.data), len(base64.b64encode(media.data)),
            Tokenizer.image_tokens(media.width, media.height, detail), took,
        ))
    return rows

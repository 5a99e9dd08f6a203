"""Attachment normalisation: sniff, check, decode, shrink and re-encode before a model sees it.

The type always comes from the bytes, never from the file name or the platform's
claimed mimetype: Slack answers a download without the right scope with an HTML
sign-in page and HTTP 200, and Discord's CDN serves a short text error for
expired links. Refusals carry a short reason meant to be shown to the user.

Images are re-encoded (which strips EXIF, GPS and other metadata) after EXIF
rotation and downscaling. Output format:
- images with real transparency -> PNG (JPEG has no alpha);
- lossless sources (PNG, GIF, lossless WEBP), usually screenshots -> PNG, because
  JPEG ringing blurs small text; when that PNG would exceed 4 MB (a photo saved
  as PNG) we fall back to JPEG;
- photos (JPEG, lossy WEBP) -> JPEG quality 85, which every OpenAI-compatible
  vision endpoint accepts (WEBP support varies between providers).
Encoding settings are fixed, so the same input always gives the same bytes and
later turns re-send identical bytes (prompt caching keeps working).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import re
from dataclasses import dataclass
from typing import Literal

from PIL import Image

from core.ports import FileRefused
from core.types import Media

log = logging.getLogger(__name__)

ImageDetail = Literal["low", "high", "auto"]

_MB = 1_000_000  # decimal megabytes, as users (and the rest of threadwise) count them
SUPPORTED = "I can read images (PNG, JPEG, WEBP, GIF), PDFs and text files"


@dataclass(frozen=True, slots=True)
class MediaLimits:
    max_input_bytes: int = 32 * _MB  # anything bigger is refused before decoding
    max_pixels: int = 64_000_000  # decoded size guard (8000x8000); PIL's own is ~89 MP
    pdf_max_bytes: int = 10 * _MB
    text_max_chars: int = 40_000  # longer text files are truncated, not refused
    max_output_bytes: int = 20 * _MB  # the model API's per-image limit


DEFAULT_LIMITS = MediaLimits()


class MediaRefused(FileRefused):
    """An attachment we will not send to the model; `reason` is user-facing."""


# --- limits on the re-encoded image -------------------------------------------
_LONG_SIDE_PX = 2048  # DESIGN.md §5
_HIGH_SHORT_SIDE_PX = 768  # high detail: the provider would shrink to this anyway
_LOW_DETAIL_PX = 512  # low detail: the model only ever sees a 512x512 version
_JPEG_QUALITY = 85
_LOSSLESS_BUDGET_BYTES = 4 * _MB
# EXIF orientation -> the transpose that makes the image upright.
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPPING_TURNS = {  # the ones that rotate by 90°
    Image.Transpose.TRANSPOSE, Image.Transpose.ROTATE_270, Image.Transpose.TRANSVERSE,
    Image.Transpose.ROTATE_90,
}

_IMAGE_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
)

# Recognised only to name them in a refusal.
_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive"),
    (b"PK\x05\x06", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old-format Office document"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"BM", "a BMP image"),
    (b"\x7fELF", "a program"),
    (b"MZ", "a Windows program"),
    (b"ID3", "an MP3 audio file"),
    (b"OggS", "an Ogg audio file"),
    (b"fLaC", "a FLAC audio file"),
    (b"\x1aE\xdf\xa3", "a WebM/MKV video"),
    (b"SQLite format 3\x00", "an SQLite database"),
)
_OOXML_PARTS = (
    (b"word/", "a Word document"),
    (b"xl/", "an Excel spreadsheet"),
    (b"ppt/", "a PowerPoint presentation"),
)
_FTYP_BRANDS = (
    ((b"heic", b"heix", b"heim", b"heis", b"hevc", b"mif1", b"msf1"), "a HEIC photo"),
    ((b"avif", b"avis"), "an AVIF image"),
    ((b"qt  ",), "a QuickTime video"),
    ((b"M4A ", b"M4B "), "an audio file"),
)

_HTML_EXTENSIONS = {".html", ".htm", ".xhtml"}
_MEDIA_EXTENSIONS = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".pdf", ".heic", ".heif"}
_TEXT_EXTENSIONS = {
    ".txt", ".text", ".md", ".markdown", ".rst", ".csv", ".tsv", ".json", ".jsonl", ".ndjson",
    ".yaml", ".yml", ".toml", ".ini", ".cfg", ".conf", ".env", ".log", ".xml", ".svg", ".css",
    ".scss", ".py", ".pyi", ".js", ".mjs", ".ts", ".tsx", ".jsx", ".java", ".kt", ".swift",
    ".c", ".h", ".cc", ".cpp", ".hpp", ".cs", ".go", ".rs", ".rb", ".php", ".pl", ".lua", ".r",
    ".sh", ".bash", ".zsh", ".ps1", ".sql", ".tex", ".diff", ".patch", ".srt", ".vtt", "",
} | _HTML_EXTENSIONS
# C0 control characters that never appear in real text (tab, newlines, form feed
# and ESC for ANSI colours in logs do).
_BINARY_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


def normalise(
    name: str,
    data: bytes,
    *,
    detail: ImageDetail = "auto",
    limits: MediaLimits = DEFAULT_LIMITS,
) -> Media:
    """Turn raw attachment bytes into what the model receives, or raise MediaRefused."""
    try:
        return _normalise(name, data, detail, limits)
    except MediaRefused:
        raise
    except Exception as exc:
        # A file none of our checks foresaw: refuse this one file, not the whole turn.
        log.warning("could not normalise %s", name, exc_info=True)
        raise MediaRefused(name, "could not be read (the file may be corrupt)") from exc


def _normalise(name: str, data: bytes, detail: ImageDetail, limits: MediaLimits) -> Media:
    if not data:
        raise MediaRefused(name, "is empty")
    if len(data) > limits.max_input_bytes:
        raise MediaRefused(
            name, f"is {_size(len(data))}; the limit is {_size(limits.max_input_bytes)}"
        )
    image_format = _image_format(data)
    if image_format is not None:
        return _normalise_image(name, data, image_format, detail, limits)
    if data.startswith(b"%PDF-"):
        return _normalise_pdf(name, data, limits)
    return _normalise_other(name, data, limits)


async def normalise_async(
    name: str,
    data: bytes,
    *,
    detail: ImageDetail = "auto",
    limits: MediaLimits = DEFAULT_LIMITS,
) -> Media:
    """normalise() in a worker thread: decoding a large photo takes long enough to stall a loop."""
    return await asyncio.to_thread(normalise, name, data, detail=detail, limits=limits)


# --- sniffing -------------------------------------------------------------------


def _image_format(data: bytes) -> str | None:
    for magic, fmt in _IMAGE_MAGIC:
        if data.startswith(magic):
            return fmt
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _describe_binary(data: bytes) -> str | None:
    if data[:4] == b"RIFF":
        return {b"WAVE": "a WAV audio file", b"AVI ": "an AVI video"}.get(data[8:12])
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        for brands, label in _FTYP_BRANDS:
            if brand in brands:
                return label
        return "an MP4 video"
    for magic, label in _OTHER_MAGIC:
        if data.startswith(magic):
            if label == "a ZIP archive":
                for part, office in _OOXML_PARTS:
                    if part in data:
                        return office
            return label
    return None


def _looks_like_html(data: bytes) -> bool:
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<!doctype html", b"<html")) or (
        head.startswith(b"<") and b"<html" in head
    )


def _decode_text(data: bytes) -> str | None:
    """The text of a UTF-8 (optionally BOM-marked) or BOM-marked UTF-16 file, else None."""
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            return data.decode("utf-16")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


# --- PDFs and text ----------------------------------------------------------------


def _normalise_pdf(name: str, data: bytes, limits: MediaLimits) -> Media:
    if len(data) > limits.pdf_max_bytes:
        raise MediaRefused(
            name, f"is {_size(len(data))}; the limit for PDFs is {_size(limits.pdf_max_bytes)}"
        )
    if b"%%EOF" not in data[-8192:]:
        raise MediaRefused(name, "could not be read as a PDF: the file is truncated")
    return Media("pdf", "application/pdf", name, data, hashlib.sha256(data).hexdigest())


def _normalise_other(name: str, data: bytes, limits: MediaLimits) -> Media:
    ext = os.path.splitext(name)[1].lower()
    if _looks_like_html(data) and ext not in _HTML_EXTENSIONS:
        raise MediaRefused(
            name,
            "looks like an HTML page, not the file itself (often a sign-in page: "
            "the bot may lack permission to download files)",
        )
    text = _decode_text(data)
    if text is not None and "\x00" not in text:  # NUL never appears in real text
        controls = len(_BINARY_CONTROLS.findall(text[:65536]))
        if ext in _TEXT_EXTENSIONS or controls <= len(text[:65536]) // 100:
            if ext in _MEDIA_EXTENSIONS:
                raise MediaRefused(
                    name,
                    "contains text, not the image or PDF its name suggests "
                    "(the download may have failed)",
                )
            return _text_media(name, text, limits)
    kind = _describe_binary(data) or "a binary file"
    raise MediaRefused(name, f"unsupported file type (looks like {kind}); {SUPPORTED}")


def _text_media(name: str, text: str, limits: MediaLimits) -> Media:
    text = text.replace("\r\n", "\n")
    if len(text) > limits.text_max_chars:
        omitted = len(text) - limits.text_max_chars
        text = f"{text[: limits.text_max_chars]}\n[… truncated {omitted} characters]"
    body = text.encode("utf-8")
    return Media("text", "text/plain", name, body, hashlib.sha256(body).hexdigest())


# --- images -----------------------------------------------------------------------


def _normalise_image(
    name: str, data: bytes, fmt: str, detail: ImageDetail, limits: MediaLimits
) -> Media:
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as im:
            width, height = im.size
            # Checked on the header alone, before a single pixel is decoded.
            _refuse_if_too_many_pixels(name, width * height, limits)
            target = _target_size(width, height, detail)
            if fmt == "JPEG":
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when that still
                # leaves at least the target size: far less memory and time.
                im.draft(im.mode, target)
            frames = int(getattr(im, "n_frames", 1))
            im.load()  # first frame only for animated GIF/WEBP
            orientation = im.getexif().get(0x0112)
            turn = _UPRIGHT.get(orientation) if isinstance(orientation, int) else None
            if turn in _SWAPPING_TURNS:
                target = (target[1], target[0])
            # Not ImageOps.exif_transpose: it also re-encodes the EXIF block, which odd
            # (but harmless) tags make fail, and we drop all metadata anyway.
            frame = im.transpose(turn) if turn is not None else im.copy()
    except MediaRefused:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        match = _BOMB_PIXELS.search(str(exc))
        pixels = int(match.group(1)) if match else limits.max_pixels + 1
        raise MediaRefused(name, _too_large(pixels)) from None
    except Exception as exc:
        # Pillow reports bad data as many types: OSError, SyntaxError, ValueError,
        # EOFError, IndexError, and struct.error for a GIF frame cut off mid-header.
        log.info("%s: the %s decoder failed: %r", name, fmt, exc)
        reason = f"could not be read as an image: corrupt or truncated {fmt}"
        raise MediaRefused(name, reason) from exc

    frame = _normalise_mode(frame)
    if frame.size != target:
        frame = frame.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    lossless_source = fmt in ("PNG", "GIF") or (fmt == "WEBP" and data[12:16] == b"VP8L")
    mime, body = _encode(frame, prefer_lossless=lossless_source)
    if len(body) > limits.max_output_bytes:
        raise MediaRefused(
            name,
            f"is still {_size(len(body))} after shrinking; the limit for images is "
            f"{_size(limits.max_output_bytes)}",
        )
    note = f"is animated; I can only see its first frame (of {frames})" if frames > 1 else ""
    return Media(
        "image", mime, name, body, hashlib.sha256(body).hexdigest(), frame.width, frame.height,
        note=note,
    )


def _refuse_if_too_many_pixels(name: str, pixels: int, limits: MediaLimits) -> None:
    if pixels > limits.max_pixels:
        raise MediaRefused(name, _too_large(pixels))


def _too_large(pixels: int) -> str:
    megapixels = pixels / 1_000_000
    shown = f"{megapixels:.0f}" if megapixels >= 10 else f"{megapixels:.1f}"
    return f"image is too large to decode safely ({shown} megapixels)"


def _target_size(width: int, height: int, detail: ImageDetail) -> tuple[int, int]:
    """The size to send: within the provider's limits for `detail`, never enlarged."""
    long_side, short_side = max(width, height), min(width, height)
    if detail == "low":
        scale = _LOW_DETAIL_PX / long_side
    else:
        scale = _LONG_SIDE_PX / long_side
        if detail == "high":
            scale = min(scale, _HIGH_SHORT_SIDE_PX / short_side)
    if scale >= 1:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def _normalise_mode(im: Image.Image) -> Image.Image:
    """Reduce any decoded mode to L, RGB (opaque) or LA, RGBA (with real transparency)."""
    if im.mode.startswith("I"):  # 16/32-bit greyscale: scale down, do not clip
        im = im.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if im.has_transparency_data:
        alpha_mode = "LA" if im.mode in ("L", "LA", "La", "1") else "RGBA"
        im = im.convert(alpha_mode)
        lowest_alpha = im.getchannel("A").getextrema()[0]
        if isinstance(lowest_alpha, int) and lowest_alpha < 255:
            return im
        return im.convert(alpha_mode[0] if alpha_mode == "LA" else "RGB")
    if im.mode in ("1", "L"):
        return im.convert("L")
    return im.convert("RGB")


def _encode(im: Image.Image, *, prefer_lossless: bool) -> tuple[str, bytes]:
    if im.mode in ("LA", "RGBA") or prefer_lossless:
        png = io.BytesIO()
        im.save(png, "PNG", compress_level=6)
        if im.mode in ("LA", "RGBA") or png.tell() <= _LOSSLESS_BUDGET_BYTES:
            return "image/png", png.getvalue()
    jpeg = io.BytesIO()
    im.save(jpeg, "JPEG", quality=_JPEG_QUALITY, optimize=True)
    return "image/jpeg", jpeg.getvalue()


def _size(n: int) -> str:
    if n < _MB:
        return f"{max(1, round(n / 1000))} KB"
    mb = n / _MB
    return f"{mb:.0f} MB" if mb == int(mb) else f"{mb:.1f} MB"

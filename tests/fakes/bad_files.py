"""A corpus of hostile or broken attachments, built in memory (no fixtures on disk)."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

BOMB_SIDE = 20_000  # 400 megapixels from a ~50 KB file


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def bomb_png(side: int = BOMB_SIDE) -> bytes:
    """A valid 1-bit greyscale PNG of side x side zero pixels: tiny on disk, huge decoded."""
    row = b"\x00" + b"\x00" * ((side + 7) // 8)  # filter byte + packed pixels
    pixels = zlib.compress(row * side, 9)
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", pixels)
            + _chunk(b"IEND", b""))


def jpeg(width: int = 64, height: int = 48) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (20, 120, 200)).save(out, "JPEG", quality=80)
    return out.getvalue()


def png(width: int = 64, height: int = 48) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 60)).save(out, "PNG")
    return out.getvalue()


def corrupt_jpeg() -> bytes:
    """A JPEG header followed by garbage where the scan data should be."""
    good = jpeg(640, 480)
    return good[:200] + bytes(range(256)) * 8


def animated_gif(frames: int = 4) -> bytes:
    # Visibly different frames (identical ones would be merged into a still image).
    images = [Image.new("RGB", (32, 32), (60 * i % 256, 90, 200 - 40 * i)) for i in range(frames)]
    out = io.BytesIO()
    images[0].save(out, "GIF", save_all=True, append_images=images[1:], duration=100, loop=0)
    return out.getvalue()


def cut_gif() -> bytes:
    """A GIF whose next frame was cut off right after its separator byte (a partial
    download): Pillow fails counting its frames with struct.error."""
    out = io.BytesIO()
    Image.new("P", (40, 30), 7).save(out, "GIF")
    return out.getvalue()[:-1] + b","


def odd_exif_jpeg(width: int = 64, height: int = 48) -> bytes:
    """A photo stored sideways (orientation 6) whose EXIF also holds XResolution typed as
    a signed byte of -1: harmless, but Pillow's exif_transpose cannot re-encode it."""
    entries = [(0x011A, 6, 1, b"\xff\x00\x00\x00"), (0x0112, 3, 1, struct.pack(">HH", 6, 0))]
    ifd = struct.pack(">H", len(entries)) + b"".join(
        struct.pack(">HHI", tag, kind, count) + value for tag, kind, count, value in sorted(
            entries)
    ) + struct.pack(">I", 0)
    im = Image.new("RGB", (width, height), (20, 120, 200))
    im.paste((220, 20, 20), (0, 0, width // 2, height))  # left half red (the top, upright)
    out = io.BytesIO()
    im.save(out, "JPEG", quality=90, exif=b"Exif\x00\x00MM\x00*" + struct.pack(">I", 8) + ifd)
    return out.getvalue()


LOGIN_PAGE = (b"<!DOCTYPE html><html><head><title>Sign in</title></head>"
              b"<body><form>password</form></body></html>")

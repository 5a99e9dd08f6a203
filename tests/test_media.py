"""Attachment normalisation: what the model gets for each kind of file a user may attach."""

from __future__ import annotations

import hashlib
import io
import resource
import struct
import zlib

import pytest
from PIL import Image, ImageDraw

from core import media as media_module
from core.media import MediaLimits, MediaRefused, normalise, normalise_async
from core.ports import FileRefused
from tests.fakes.bad_files import cut_gif, odd_exif_jpeg

RED, BLUE = (220, 20, 20), (20, 20, 220)
MB = 1_000_000


def _encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **params)
    return out.getvalue()


def _photo(width: int, height: int) -> Image.Image:
    """A cheap image with some structure (solid fills encode fast at any size)."""
    im = Image.new("RGB", (width, height), (90, 140, 200))
    ImageDraw.Draw(im).rectangle((width // 4, height // 4, width // 2, height // 2), fill=RED)
    return im


def _png_declaring(width: int, height: int) -> bytes:
    """A few hundred bytes whose header claims width x height RGB pixels (a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def _reopen(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def _refusal(name: str, data: bytes, **kwargs: object) -> str:
    with pytest.raises(MediaRefused) as caught:
        normalise(name, data, **kwargs)  # type: ignore[arg-type]
    assert isinstance(caught.value, FileRefused)  # adapters/service catch the port's type
    assert caught.value.name == name
    return caught.value.reason


# --- images -------------------------------------------------------------------------


def test_exif_rotated_photo_comes_out_upright_with_swapped_dimensions() -> None:
    # Stored sideways: left half red, right half blue; orientation 6 = rotate 90° clockwise.
    stored = Image.new("RGB", (400, 300), BLUE)
    ImageDraw.Draw(stored).rectangle((0, 0, 199, 299), fill=RED)
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "SecretCam"  # camera make: metadata that must not leave
    media = normalise("IMG_0001.JPG", _encode(stored, "JPEG", exif=exif, quality=95))

    assert (media.width, media.height) == (300, 400)
    upright = _reopen(media.data).convert("RGB")
    assert upright.size == (300, 400)
    top, bottom = upright.getpixel((150, 60)), upright.getpixel((150, 340))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 180 and top[2] < 80  # red is on top once rotated clockwise
    assert bottom[2] > 180 and bottom[0] < 80
    assert not upright.getexif()  # re-encoded without EXIF (no orientation to apply twice)
    assert b"SecretCam" not in media.data


@pytest.mark.parametrize(
    ("detail", "size"), [("auto", (2048, 1536)), ("high", (1024, 768)), ("low", (512, 384))]
)
def test_twelve_megapixel_photo_is_shrunk_for_the_detail_level(
    detail: str, size: tuple[int, int]
) -> None:
    media = normalise("photo.jpg", _encode(_photo(4000, 3000), "JPEG", quality=90), detail=detail)  # type: ignore[arg-type]
    assert media.kind == "image" and media.mime == "image/jpeg"
    assert (media.width, media.height) == size
    assert _reopen(media.data).size == size


def test_rotated_large_photo_is_shrunk_in_its_upright_shape() -> None:
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90° counter-clockwise to display
    data = _encode(_photo(4000, 3000), "JPEG", exif=exif)
    high = normalise("p.jpg", data, detail="high")
    assert (high.width, high.height) == (768, 1024)
    assert _reopen(normalise("p.jpg", data).data).size == (1536, 2048)


def test_small_images_are_not_upscaled() -> None:
    media = normalise("icon.png", _encode(_photo(300, 200), "PNG"), detail="high")
    assert (media.width, media.height) == (300, 200)
    assert _reopen(media.data).size == (300, 200)


def test_screenshots_stay_lossless_and_photos_become_jpeg() -> None:
    shot = normalise("screenshot.png", _encode(_photo(800, 600), "PNG"))
    assert shot.mime == "image/png"
    assert _reopen(shot.data).tobytes() == _photo(800, 600).tobytes()  # pixel-exact
    photo = normalise("photo.webp", _encode(_photo(800, 600), "WEBP", quality=80))
    assert photo.mime == "image/jpeg"


def test_transparency_is_kept_and_an_opaque_alpha_channel_dropped() -> None:
    see_through = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    ImageDraw.Draw(see_through).ellipse((8, 8, 56, 56), fill=(0, 0, 255, 255))
    kept = normalise("logo.png", _encode(see_through, "PNG"))
    assert kept.mime == "image/png"
    assert _reopen(kept.data).mode == "RGBA"

    opaque = normalise("flat.png", _encode(_photo(64, 64).convert("RGBA"), "PNG"))
    assert _reopen(opaque.data).mode == "RGB"


def test_animated_gif_gives_its_first_frame_only() -> None:
    frames = [Image.new("RGB", (80, 60), c) for c in (RED, (20, 200, 20), BLUE)]
    gif = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert getattr(Image.open(io.BytesIO(gif)), "n_frames", 1) == 3

    media = normalise("party.gif", gif)
    assert media.note == "is animated; I can only see its first frame (of 3)"
    assert normalise("still.png", _encode(frames[0], "PNG")).note == ""
    out = _reopen(media.data)
    assert getattr(out, "n_frames", 1) == 1
    pixel = out.convert("RGB").getpixel((40, 30))
    assert isinstance(pixel, tuple) and pixel[0] > 180 and pixel[1] < 80


def test_decompression_bomb_is_refused_without_decoding_it() -> None:
    bomb = _png_declaring(30_000, 30_000)  # 2.7 GB of RGB if anyone decoded it
    assert len(bomb) < 200
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reason = _refusal("innocent.png", bomb)
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert reason == "image is too large to decode safely (900 megapixels)"
    assert peak_after - peak_before < 200 * 1024  # KiB: nothing near 2.7 GB was allocated


def test_pixel_limit_is_per_call_and_checked_before_decoding() -> None:
    # 64 MP declared but the pixel data is missing: decoding would fail as "truncated",
    # so getting the size reason proves the check ran on the header alone.
    limit_before = Image.MAX_IMAGE_PIXELS
    reason = _refusal("big.png", _png_declaring(8000, 8000), limits=MediaLimits(max_pixels=10**7))
    assert reason == "image is too large to decode safely (64 megapixels)"
    assert limit_before == Image.MAX_IMAGE_PIXELS  # Pillow's global guard is left alone
    # The same kind of file within a caller's larger limit is judged on its data instead.
    assert "corrupt or truncated PNG" in _refusal("big.png", _png_declaring(3000, 3000))


def test_truncated_and_corrupt_jpegs_are_refused() -> None:
    good = _encode(Image.effect_noise((640, 480), 50).convert("RGB"), "JPEG")
    assert _refusal("cut.jpg", good[: len(good) // 2]) == (
        "could not be read as an image: corrupt or truncated JPEG"
    )
    garbage = good[:4] + bytes(range(256)) * 8
    assert "corrupt or truncated JPEG" in _refusal("noise.jpg", garbage)


def test_a_gif_cut_off_after_its_first_frame_is_refused() -> None:
    assert _refusal("cut.gif", cut_gif()) == (
        "could not be read as an image: corrupt or truncated GIF"
    )


def test_a_sideways_photo_with_odd_exif_still_comes_out_upright() -> None:
    media = normalise("IMG_0002.JPG", odd_exif_jpeg(64, 48))
    assert (media.width, media.height) == (48, 64)
    upright = _reopen(media.data).convert("RGB")
    top = upright.getpixel((24, 5))
    assert isinstance(top, tuple) and top[0] > 180 and top[2] < 80  # red, left half, on top


def test_an_error_no_check_foresaw_refuses_only_that_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken_encoder(im: Image.Image, *, prefer_lossless: bool) -> tuple[str, bytes]:
        raise KeyError("an encoder bug")

    monkeypatch.setattr(media_module, "_encode", broken_encoder)
    assert _refusal("chart.png", _encode(_photo(64, 48), "PNG")) == (
        "could not be read (the file may be corrupt)"
    )


def test_type_comes_from_the_bytes_not_the_name() -> None:
    png = _encode(Image.new("RGB", (40, 30), RED), "PNG")
    media = normalise("holiday.jpg", png)  # platform also claimed image/jpeg
    assert media.kind == "image" and media.mime == "image/png"
    assert (media.width, media.height) == (40, 30)


def test_html_login_page_named_like_a_photo_is_refused() -> None:
    page = b"<!DOCTYPE html>\n<html><head><title>Sign in | Slack</title></head><body></body></html>"
    reason = _refusal("photo.png", page)
    assert reason.startswith("looks like an HTML page")
    assert "permission" in reason


def test_output_over_the_image_cap_is_refused() -> None:
    noise = _encode(Image.effect_noise((400, 400), 100).convert("RGB"), "JPEG")
    reason = _refusal("noise.jpg", noise, limits=MediaLimits(max_output_bytes=10_000))
    assert reason.startswith("is still ") and reason.endswith("the limit for images is 10 KB")


def test_same_input_gives_byte_identical_output() -> None:
    jpeg = _encode(_photo(3000, 2000), "JPEG")
    png = _encode(_photo(900, 700), "PNG")
    for name, data in (("a.jpg", jpeg), ("b.png", png)):
        first, second = normalise(name, data), normalise(name, data)
        assert first.data == second.data
        assert first.sha256 == second.sha256 == hashlib.sha256(first.data).hexdigest()


async def test_async_variant_gives_the_same_result() -> None:
    data = _encode(_photo(2500, 1000), "JPEG")
    media = await normalise_async("wide.jpg", data, detail="high")
    assert media == normalise("wide.jpg", data, detail="high")
    assert (media.width, media.height) == (1920, 768)


# --- PDFs, text and everything else ---------------------------------------------------


def test_empty_file_is_refused() -> None:
    assert _refusal("empty.png", b"") == "is empty"


def test_input_over_the_download_cap_is_refused() -> None:
    data = b"%PDF-1.7\n" + b"0" * (3 * MB)
    assert _refusal("big.pdf", data, limits=MediaLimits(max_input_bytes=2 * MB)) == (
        "is 3.0 MB; the limit is 2 MB"
    )


def test_pdf_is_passed_through_as_is() -> None:
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n"
    media = normalise("report.pdf", pdf)
    assert (media.kind, media.mime, media.name) == ("pdf", "application/pdf", "report.pdf")
    assert media.data == pdf
    assert media.sha256 == hashlib.sha256(pdf).hexdigest()


def test_pdf_over_its_cap_is_refused_with_the_numbers() -> None:
    pdf = b"%PDF-1.4\n" + b"x" * int(14.2 * MB) + b"\n%%EOF\n"
    assert _refusal("scan.pdf", pdf) == "is 14.2 MB; the limit for PDFs is 10 MB"


def test_truncated_pdf_is_refused() -> None:
    assert "truncated" in _refusal("half.pdf", b"%PDF-1.4\n" + b"x" * 50_000)


def test_text_file_is_inlined_as_utf8() -> None:
    media = normalise("notes.md", "# Plan\r\nShip on Friday — ✅\r\n".encode())
    assert (media.kind, media.mime) == ("text", "text/plain")
    assert media.data.decode() == "# Plan\nShip on Friday — ✅\n"
    utf16 = normalise("export.csv", "name,city\nZoë,Köln\n".encode("utf-16"))
    assert utf16.data.decode() == "name,city\nZoë,Köln\n"


def test_long_text_is_truncated_with_a_visible_marker() -> None:
    text = "".join(f"line {i}\n" for i in range(10_000))  # ~78,890 characters
    media = normalise("server.log", text.encode())
    body = media.data.decode()
    assert body.startswith("line 0\nline 1\n")
    assert body.endswith(f"\n[… truncated {len(text) - 40_000} characters]")
    assert len(body) < 40_100
    short = normalise("a.log", text.encode(), limits=MediaLimits(text_max_chars=100))
    assert short.data.decode()[:100] == text[:100]


def test_nul_bytes_mean_binary_not_text() -> None:
    reason = _refusal("data.txt", b"header\x00\x01\x02\x00binary payload")
    assert reason.startswith("unsupported file type (looks like a binary file)")


def test_text_where_an_image_was_expected_is_refused() -> None:
    assert "contains text" in _refusal("cat.png", b"This content is no longer available.")


@pytest.mark.parametrize(
    ("data", "looks_like"),
    [
        (b"PK\x03\x04\x14\x00\x00\x00" + b"\x00" * 40, "a ZIP archive"),
        (b"PK\x03\x04\x14\x00" + b"word/document.xml" + b"\x00" * 20, "a Word document"),
        (b"\x00\x00\x00\x18ftypheic" + b"\x00" * 40, "a HEIC photo"),
        (b"\x7fELF\x02\x01\x01" + b"\x00" * 40, "a program"),
    ],
)
def test_unsupported_types_are_named(data: bytes, looks_like: str) -> None:
    assert _refusal("upload.png", data) == (
        f"unsupported file type (looks like {looks_like}); "
        "I can read images (PNG, JPEG, WEBP, GIF), PDFs and text files"
    )

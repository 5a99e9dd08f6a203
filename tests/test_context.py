"""Context assembly: what the model sees of a thread, in which order, within the budget."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence

import pytest

from core.context import Assembled, assemble, pdf_tokens
from core.model.types import FilePart, ImagePart, ModelMessage, TextPart
from core.tokens import Tokenizer
from core.types import Media, MediaRef, Role, StoredMessage, ThreadKey, ToolExchange

KEY = ThreadKey("slack", "T1", "C1", "1700000000.000100")
INSTRUCTIONS = "You are threadwise. Users are labelled by name."
TOKENIZER = Tokenizer("openai/gpt-5.4-mini")


def _msg(
    i: int,
    role: Role,
    text: str,
    author: str = "Alice",
    media: Sequence[MediaRef] = (),
    tools: Sequence[ToolExchange] = (),
) -> StoredMessage:
    return StoredMessage(
        id=i, key=KEY, role=role,
        author_id="B1" if role == "assistant" else f"U-{author}",
        author_name="threadwise" if role == "assistant" else author,
        text=text, platform_id=f"17000000{i:02d}.0", parent_id=i - 1 if i else None,
        created_at=1_700_000_000.0 + i, media=tuple(media), tools=tuple(tools),
    )


def _media(
    kind: str, name: str, data: bytes, mime: str, size: tuple[int, int] | None = None
) -> Media:
    width, height = size if size else (None, None)
    return Media(kind, mime, name, data, hashlib.sha256(data).hexdigest(), width, height)  # type: ignore[arg-type]


def _ref(item: Media) -> MediaRef:
    return MediaRef(item.sha256, item.kind, item.name)


def _assemble(
    history: Sequence[StoredMessage],
    newest: StoredMessage,
    *,
    media: dict[str, Media] | None = None,
    budget: int = 100_000,
    reserve: int = 1_000,
    detail: str = "auto",
    turn_context: str = "",
) -> Assembled:
    return assemble(
        instructions=INSTRUCTIONS, history=history, newest=newest, media=media or {},
        tokenizer=TOKENIZER, budget_tokens=budget, reserve_output_tokens=reserve,
        image_detail=detail, cache_key="tw:slack:C1:1700000000.000100",
        turn_context=turn_context,
    )


def _texts(message: ModelMessage) -> list[str]:
    return [p.text for p in message.parts if isinstance(p, TextPart)]


def _thread(n: int) -> list[StoredMessage]:
    """A long conversation: users alternate with the bot, messages of varied length."""
    out = []
    for i in range(n):
        if i % 2 == 0:
            author = ("Alice", "Bob", "Chandra")[i // 2 % 3]
            text = f"Question {i}: " + "how does this part work? " * (1 + i % 3)
            out.append(_msg(i, "user", text, author))
        else:
            out.append(_msg(i, "assistant", f"Answer {i}: " + "it works like this. " * (2 + i % 4)))
    return out


def test_speakers_are_labelled_and_order_is_kept() -> None:
    history = [
        _msg(0, "user", "Can we ship Friday?", "Alice"),
        _msg(1, "assistant", "Probably, if QA signs off."),
        _msg(2, "user", "QA here: not before Monday.", "Bob Smith"),
    ]
    newest = _msg(3, "user", "So Monday then?", "Alice")
    result = _assemble(history, newest)

    assert result.request.instructions == INSTRUCTIONS
    assert result.request.cache_key == "tw:slack:C1:1700000000.000100"
    assert [m.role for m in result.request.messages] == ["user", "assistant", "user", "user"]
    assert [_texts(m) for m in result.request.messages] == [
        ["Alice: Can we ship Friday?"],
        ["Probably, if QA signs off."],
        ["Bob Smith: QA here: not before Monday."],
        ["Alice: So Monday then?"],
    ]
    assert result.dropped_messages == 0 and result.notes == ()
    assert result.estimated_prompt_tokens > TOKENIZER.count(INSTRUCTIONS)


def test_attachments_render_by_kind_and_missing_ones_are_named() -> None:
    image = _media("image", "chart.png", b"png-bytes", "image/png", (800, 600))
    pdf = _media("pdf", "spec.pdf", b"%PDF-1.4 /Type /Page %%EOF", "application/pdf")
    notes = _media("text", "notes.md", b"# Notes\nship it", "text/plain")
    gone = MediaRef("0" * 64, "image", "old-screenshot.png")
    history = [_msg(0, "user", "See attached", media=[_ref(image), _ref(pdf), gone])]
    newest = _msg(1, "user", "and these notes", "Bob", media=[_ref(notes)])
    media = {m.sha256: m for m in (image, pdf, notes)}

    first, last = _assemble(history, newest, media=media, detail="high").request.messages
    label, img, file, missing = first.parts
    assert label == TextPart("Alice: See attached")
    assert img == ImagePart(b"png-bytes", "image/png", "high")
    assert file == FilePart(pdf.data, "application/pdf", "spec.pdf")
    assert missing == TextPart("[attachment old-screenshot.png is no longer available]")
    assert last.parts == (
        TextPart("Bob: and these notes"),
        TextPart("[file: notes.md]\n# Notes\nship it\n[end of file: notes.md]"),
    )


def test_image_costs_follow_the_tile_rule() -> None:
    photo = _media("image", "photo.jpg", b"jpeg", "image/jpeg", (2048, 1536))
    plain = _assemble([], _msg(0, "user", "look"))
    high = _assemble([], _msg(0, "user", "look", media=[_ref(photo)]), media={photo.sha256: photo},
                     detail="high")
    low = _assemble([], _msg(0, "user", "look", media=[_ref(photo)]), media={photo.sha256: photo},
                    detail="low")
    assert high.estimated_prompt_tokens - plain.estimated_prompt_tokens == 765
    assert low.estimated_prompt_tokens - plain.estimated_prompt_tokens == 85


def test_tool_exchanges_stay_on_their_assistant_message() -> None:
    call = ToolExchange("call_1", "get_time", "{}", '{"utc": "12:00"}')
    history = [_msg(0, "user", "time?"), _msg(1, "assistant", "It is noon.", tools=[call])]
    messages = _assemble(history, _msg(2, "user", "thanks")).request.messages
    assert messages[1].tools == (call,) and _texts(messages[1]) == ["It is noon."]


def test_turn_context_goes_last_and_never_into_the_instructions() -> None:
    history = _thread(6)
    newest = _msg(6, "user", "what time is it?")
    monday = _assemble(history, newest, turn_context="(Current time: Monday 09:00 UTC.)")
    tuesday = _assemble(history, newest, turn_context="(Current time: Tuesday 17:30 UTC.)")

    assert monday.request.instructions == tuesday.request.instructions == INSTRUCTIONS
    assert monday.request.messages[:-1] == tuesday.request.messages[:-1]  # cacheable prefix
    assert monday.request.messages[-1].parts[-1] == TextPart("(Current time: Monday 09:00 UTC.)")
    assert _texts(monday.request.messages[-1])[0] == "Alice: what time is it?"


def test_trimming_drops_the_oldest_messages_first() -> None:
    history = _thread(60)
    newest = _msg(60, "user", "summarise please")
    result = _assemble(history, newest, budget=1_600, reserve=400)

    assert 0 < result.dropped_messages < 60
    kept = result.request.messages[:-1]
    expected = history[result.dropped_messages :]
    assert [_texts(m)[0] for m in kept] == [
        (f"{m.author_name}: {m.text}" if m.role == "user" else m.text) for m in expected
    ]
    assert kept[0].role == "user"
    assert _texts(result.request.messages[-1]) == ["Alice: summarise please"]
    assert result.estimated_prompt_tokens <= 1_200
    assert result.notes == (f"I could only see the last {len(kept) + 1} messages of this thread.",)


def test_cut_point_stays_put_across_turns_and_jumps_in_big_steps() -> None:
    thread = _thread(200)
    cuts: list[int] = []
    previous: Assembled | None = None
    same_prefix_turns = 0
    for newest_index in range(40, 200, 2):  # every user turn of a growing thread
        result = _assemble(
            thread[:newest_index], thread[newest_index], budget=2_000, reserve=500,
            turn_context=f"(turn {newest_index})",
        )
        messages = result.request.messages
        assert result.estimated_prompt_tokens <= 1_500
        assert messages[0].role == "user"  # never opens on a reply without its question
        assert _texts(messages[-1])[-1] == f"(turn {newest_index})"
        if previous is not None:
            assert result.dropped_messages >= previous.dropped_messages  # oldest go first
            if result.dropped_messages == previous.dropped_messages:
                # Everything the previous turn sent, bar its per-turn suffix, is resent
                # byte for byte: the provider's cached prefix is still valid.
                old = previous.request.messages
                assert messages[: len(old) - 1] == old[:-1]
                assert messages[len(old) - 1].parts == old[-1].parts[:-1]
                same_prefix_turns += 1
        cuts.append(result.dropped_messages)
        previous = result

    moves = [b - a for a, b in itertools.pairwise(cuts) if b != a]
    assert cuts[-1] > 100  # the thread really was trimmed, many times
    assert len(moves) >= 5
    assert same_prefix_turns >= 0.75 * (len(cuts) - 1)
    assert min(moves) >= 6  # each move drops a big block, not a message or two per turn


def test_newest_message_is_always_kept_even_when_nothing_else_fits() -> None:
    history = _thread(20)
    newest = _msg(20, "user", "one more question " * 30)
    result = _assemble(history, newest, budget=220, reserve=100)
    assert result.dropped_messages == 20
    assert [_texts(m) for m in result.request.messages] == [[f"Alice: {newest.text}"]]
    assert result.notes == (
        "This thread is too long for me to see; I could only read your latest message.",
    )


def test_oversized_newest_message_is_cut_from_the_middle_with_a_note() -> None:
    text = "BEGINNING of the log. " + "noise line. " * 8_000 + "What failed at the END?"
    newest = _msg(2, "user", text)
    result = _assemble(
        _thread(2), newest, budget=1_500, reserve=500, turn_context="(Current time: noon.)"
    )
    (only,) = result.request.messages
    body, context = _texts(only)
    assert body.startswith("Alice: BEGINNING of the log.")
    assert body.endswith("What failed at the END?")
    assert "characters cut from the middle of this message" in body
    assert context == "(Current time: noon.)"
    assert result.estimated_prompt_tokens <= 1_000
    assert any("too long for me to read whole" in n for n in result.notes)


def test_attachments_of_the_newest_message_are_dropped_when_they_cannot_fit() -> None:
    data = b"%PDF-1.4 " + b"/Type /Page " * 50 + b"%%EOF"  # 50 pages
    pdf = _media("pdf", "huge.pdf", data, "application/pdf")
    newest = _msg(0, "user", "read this", media=[_ref(pdf)])
    result = _assemble([], newest, media={pdf.sha256: pdf}, budget=5_000, reserve=1_000)
    assert result.request.messages[0].parts == (TextPart("Alice: read this"),)
    assert result.notes == ("huge.pdf was too large to fit in my context, so I did not read it.",)


@pytest.mark.parametrize(
    ("data", "tokens"),
    [
        (b"%PDF-1.7\n1 0 obj <</Type /Pages /Count 12>>\n%%EOF", 12 * 1_500),
        (b"%PDF-1.7\n<</Type/Page>> <</Type /Page>> <</Type /Pages /Kids []>>%%EOF", 2 * 1_500),
        (b"%PDF-1.7\n" + b"\x00" * 180_000 + b"%%EOF", 3 * 1_500),  # compressed: by size
    ],
)
def test_pdf_token_estimate(data: bytes, tokens: int) -> None:
    assert pdf_tokens(data) == tokens

"""Narration without infrastructure: the narrated text, voices, WAV headers, chunking and the
byte-range arithmetic of shared/audio.py."""

from __future__ import annotations

import asyncio
import struct
from datetime import UTC, datetime

import pytest

from services.narration.settings import NarrationSettings
from services.narration.tts import (
    Synthesizer, html_paragraphs, narration_text, parse_wav_header, ssml, stream_serial, voice_for, word_count,
)
from shared.audio import (
    CHUNK_SIZE, RangeNotSatisfiable, byte_range, chunk_count, chunk_id, chunk_ids, chunk_span, etag_of, split_chunks,
)
from shared.events import Article

T = datetime(2026, 11, 27, 8, tzinfo=UTC)


def article(body_html: str, *, headline: str = "Headline", standfirst: str | None = "Standfirst.", language: str = "en") -> Article:
    return Article(id="00112233aabbccdd", uri="urn:t", version=1, version_created=T, first_created=T, pub_status="usable",
                   language=language, language_tag=language, headline=headline, standfirst=standfirst,
                   body_html=body_html, slug="s", content_hash="h")


# --- the narrated text --------------------------------------------------------------------------

def test_paragraphs_come_from_block_elements_with_inline_markup_joined():
    html = ("<p>First <b>bold</b> and <a href='x'>linked</a> words.</p><h2>A heading</h2>"
            "<ul><li>one</li><li>two<br>lines</li></ul><blockquote><p>Quoted.</p></blockquote>")
    assert html_paragraphs(html) == ["First bold and linked words.", "A heading", "one", "two lines", "Quoted."]


def test_figures_images_and_scripts_are_not_read():
    html = ("<p>Before.</p><figure><img src='a.jpg' alt='alt text'><figcaption>Caption</figcaption></figure>"
            "<p>After<img src='b.jpg' alt='inline'> text.</p><script>var x = 1;</script>")
    assert html_paragraphs(html) == ["Before.", "After text."]


def test_text_between_blocks_and_entities_survive():
    assert html_paragraphs("loose <p>in &amp; out</p> tail &lt;3") == ["loose", "in & out", "tail <3"]
    assert html_paragraphs("") == []
    assert html_paragraphs("<p> </p><p>\n</p>") == []


def test_narration_is_headline_standfirst_then_body():
    a = article("<p>Body one.</p><p>Body two.</p>", headline="Big <news>", standfirst="Short summary.")
    assert narration_text(a, 10_000) == ["Big <news>", "Short summary.", "Body one.", "Body two."]
    assert narration_text(article("<p>Only body.</p>", standfirst=None), 10_000) == ["Headline", "Only body."]


def test_narration_is_capped_at_a_sentence_or_word():
    body = "<p>" + " ".join(f"Sentence number {i} is here." for i in range(100)) + "</p>"
    a = article(body, headline="H", standfirst=None)
    text = narration_text(a, 300)
    assert sum(len(p) for p in text) <= 300
    assert text[0] == "H" and text[1].endswith("is here.")
    unbroken = article("<p>" + "word " * 200 + "</p>", headline="H", standfirst=None)
    cut = narration_text(unbroken, 251)
    assert sum(len(p) for p in cut) <= 251 and cut[1].endswith("word")
    # A cap inside the standfirst leaves the body out.
    assert narration_text(article("<p>Body.</p>", headline="H" * 10, standfirst="S " * 200), 200)[-1].startswith("S")


def test_ssml_escapes_markup_and_separates_paragraphs():
    out = ssml(["A < B & C", "Say \"hi\"\x01"], 600)
    assert out == '<speak>A &lt; B &amp; C<break time="600ms"/>Say "hi" </speak>'
    assert ssml(["x", "y"], 0) == "<speak>x y</speak>"


def test_word_count_counts_kazakh_and_russian_words():
    assert word_count(["Қазақстан жаңалықтары бүгін.", "Новости дня, 27 ноября."]) == 7


# --- voices -----------------------------------------------------------------------------------

def test_voice_map():
    voices = NarrationSettings().voices
    assert voice_for("kk", voices) == "kk"
    assert voice_for("kz", voices) == "kk"
    assert voice_for("ru-RU", voices) == "ru"
    assert voice_for("EN_gb", voices) == "en-gb"
    assert voice_for("de", voices) is None
    assert voice_for("", voices) is None
    assert voice_for("en-us", {"en": "en-gb", "en-us": "en-us"}) == "en-us"


def test_voices_setting_reads_json_from_the_environment(monkeypatch):
    monkeypatch.setenv("KAZPOST_NARRATION_VOICES", '{"kk": "kk", "tr": "tr"}')
    monkeypatch.setenv("KAZPOST_NARRATION_CONCURRENCY", "2")
    settings = NarrationSettings()
    assert settings.voices == {"kk": "kk", "tr": "tr"} and settings.concurrency == 2


def test_missing_tools_are_reported_not_raised():
    synth = Synthesizer(NarrationSettings(espeak="/nonexistent/espeak-ng"))
    problem = asyncio.run(synth.check())
    assert problem is not None and "espeak-ng" in problem and "narration-deps.sh" in problem
    assert synth.problem == problem


def test_stream_serial_is_stable_per_version_and_fits_31_bits():
    a, b = stream_serial("00112233aabbccdd", 1), stream_serial("00112233aabbccdd", 2)
    assert a == stream_serial("00112233aabbccdd", 1) and a != b
    assert 0 <= a < 2**31 and 0 <= stream_serial("not-hex!", 3) < 2**31


# --- WAV header ------------------------------------------------------------------------------------

def wav_header(rate=22050, channels=1, bits=16, data_size=0x7FFFF000, extra: bytes = b"") -> bytes:
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits)
    return (b"RIFF" + struct.pack("<I", 0x7FFFF024) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + extra
            + b"data" + struct.pack("<I", data_size))


def test_wav_header_of_a_stream_gives_rate_and_data_offset():
    head = wav_header()
    fmt = parse_wav_header(head)
    assert fmt is not None and (fmt.rate, fmt.channels, fmt.bits, fmt.data_offset) == (22050, 1, 16, 44)
    assert fmt.byte_rate == 44100
    assert parse_wav_header(head[:30]) is None  # not all there yet


def test_wav_header_skips_other_chunks_and_rejects_non_wav():
    extra = b"LIST" + struct.pack("<I", 3) + b"abc\x00"  # odd size: padded
    fmt = parse_wav_header(wav_header(rate=48000, channels=2, extra=extra))
    assert fmt is not None and fmt.rate == 48000 and fmt.channels == 2 and fmt.data_offset == 44 + 12
    with pytest.raises(ValueError):
        parse_wav_header(b"OggS" + b"\x00" * 40)
    with pytest.raises(ValueError):
        parse_wav_header(wav_header(bits=12))


# --- chunks and ranges -----------------------------------------------------------------------------

def test_chunk_ids_sort_in_order():
    assert chunk_id("abc", 3, 7) == "abc:3:00007"
    ids = chunk_ids("abc", 12, 12)
    assert ids == sorted(ids) and len(set(ids)) == 12


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 17])
def test_split_and_reassemble(size):
    data = bytes(i % 251 for i in range(size))
    chunks = split_chunks(data)
    assert b"".join(chunks) == data
    assert len(chunks) == chunk_count(size)
    assert all(len(c) == CHUNK_SIZE for c in chunks[:-1])


def test_chunk_span_covers_exactly_the_range():
    assert list(chunk_span(0, 0, 10)) == [0]
    assert list(chunk_span(9, 10, 10)) == [0, 1]
    assert list(chunk_span(10, 29, 10)) == [1, 2]
    assert list(chunk_span(25, 25, 10)) == [2]
    for start in range(0, 40, 3):
        for end in range(start, 40, 7):
            span = chunk_span(start, end, 10)
            assert span.start * 10 <= start and end < span.stop * 10
            assert (span.start + 1) * 10 > start and (span.stop - 1) * 10 <= end


@pytest.mark.parametrize(("header", "expected"), [
    (None, None), ("", None),
    ("bytes=0-99", (0, 99)), ("bytes=100-", (100, 999)), ("bytes=-100", (900, 999)), ("bytes=-5000", (0, 999)),
    ("bytes=500-5000", (500, 999)), ("bytes=999-999", (999, 999)), ("BYTES = 1 - 2", (1, 2)),
    ("bytes=0-1,5-6", None), ("items=0-1", None), ("bytes=5-1", None), ("bytes=-", None), ("bytes=a-b", None),
])
def test_byte_range(header, expected):
    assert byte_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=1000-2000", "bytes=-0"])
def test_unsatisfiable_ranges(header):
    with pytest.raises(RangeNotSatisfiable):
        byte_range(header, 1000)


def test_etag_is_a_quoted_string():
    tag = etag_of("ab" * 32)
    assert tag.startswith('"') and tag.endswith('"') and '"' not in tag[1:-1]


def test_text_fingerprint_changes_with_what_is_heard_only():
    from services.narration.handlers import text_fingerprint

    settings = NarrationSettings()
    base = text_fingerprint(["Headline", "Body."], "kk", settings)
    assert base == text_fingerprint(["Headline", "Body."], "kk", NarrationSettings(concurrency=3, nice=0))
    assert base != text_fingerprint(["Headline", "Body!"], "kk", settings)
    assert base != text_fingerprint(["Headline Body."], "kk", settings)
    assert base != text_fingerprint(["Headline", "Body."], "ru", settings)
    assert base != text_fingerprint(["Headline", "Body."], "kk", NarrationSettings(words_per_minute=200))


def test_a_cancelled_narration_ends_with_both_tools_killed_even_with_full_pipes(tmp_path):
    """A stop cancels a running narration. espeak-ng still writing into a pipe nobody reads any
    more, and opusenc not reading: the cancellation must not wait for pipes that never close."""
    import os
    import sys

    header = wav_header()
    espeak = tmp_path / "espeak"
    espeak.write_text(f"#!{sys.executable}\nimport sys\nsys.stdout.buffer.write({header!r})\n"
                      "while True:\n    sys.stdout.buffer.write(bytes(65536))\n")
    opusenc = tmp_path / "opusenc"
    opusenc.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(600)\n")  # never reads
    for tool in (espeak, opusenc):
        tool.chmod(0o755)
    synth = Synthesizer(NarrationSettings(espeak=str(espeak), opusenc=str(opusenc), nice=0, timeout_s=600))

    async def scenario() -> list[int]:
        task = asyncio.create_task(synth.synthesize(["Long text."], "en", title="t", language="en", serial=1))
        while synth.running == 0:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)  # both started, the pipes fill up
        children = [int(p) for p in os.listdir("/proc") if p.isdigit() and _parent(int(p)) == os.getpid()
                    and str(tmp_path) in _cmdline(int(p))]  # the two fake tools
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 20)
        return children

    children = asyncio.run(scenario())
    assert len(children) == 2 and synth.running == 0
    assert all(_parent(pid) != os.getpid() for pid in children), "the tools are killed and reaped"


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""

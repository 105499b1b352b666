"""Text to speech: the narrated text of an article, and espeak-ng → opusenc as subprocesses.

espeak-ng reads SSML on stdin (paragraphs separated by ``<break>``) and writes a WAV stream on
stdout; we pass it on to ``opusenc - -`` and count the bytes: espeak-ng writes the WAV header
before it knows the length (its size fields say 0x7ffff000), so the duration is the data we
saw divided by the byte rate of the header. Both run under ``nice``, at most ``concurrency`` at
a time, and are killed after ``timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import struct
import time
from dataclasses import dataclass
from xml.sax.saxutils import escape

import lxml.html
import structlog
from lxml import etree

from services.narration.settings import NarrationSettings
from shared.events import Article

log = structlog.get_logger("narration")

# Elements that start a new paragraph of speech, and those never read out.
BLOCKS = frozenset({
    "p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "li", "blockquote", "ul", "ol", "dl", "dt", "dd", "pre",
    "section", "article", "header", "footer", "aside", "table", "tr", "caption", "hr", "address",
})
SKIPPED = frozenset({"figure", "img", "script", "style", "noscript", "iframe", "video", "audio", "picture", "svg",
                     "template", "object", "embed"})
_SPACE = re.compile(r"\s+")
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_WORD = re.compile(r"\w+", re.UNICODE)
_SENTENCE_END = re.compile(r"[.!?…»\"”)](?=\s)")


class NarrationFailed(Exception):
    """espeak-ng or opusenc failed, timed out, or gave no audio (3 attempts, then dead-lettered)."""


class ToolsMissing(RuntimeError):
    """espeak-ng or opusenc is not installed (or a configured voice is missing)."""


def _clean(text: str) -> str:
    return _SPACE.sub(" ", _XML_BAD.sub(" ", text)).strip()


def html_paragraphs(body_html: str) -> list[str]:
    """The body as plain-text paragraphs: one per block element, figures and images left out."""
    if not body_html.strip():
        return []
    try:
        root = lxml.html.fragment_fromstring(body_html, create_parent="div")
    except (etree.ParserError, ValueError):
        return [t for t in [_clean(body_html)] if t]
    paragraphs: list[str] = []
    buffer: list[str] = []

    def flush() -> None:
        text = _clean("".join(buffer))
        buffer.clear()
        if text:
            paragraphs.append(text)

    def walk(el: etree._Element) -> None:
        tag = el.tag.lower() if isinstance(el.tag, str) else ""
        if tag in SKIPPED or not tag:  # comments and processing instructions have no string tag
            buffer.append(" ")
        else:
            block = tag in BLOCKS
            if block:
                flush()
            buffer.append(el.text or "")
            for child in el:
                walk(child)
            if block:
                flush()
            elif tag == "br" or tag in ("td", "th"):
                buffer.append(" ")
        buffer.append(el.tail or "")

    walk(root)
    flush()
    return paragraphs


def _cut(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, at a sentence end if one is near, else a word."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    ends = [m.end() for m in _SENTENCE_END.finditer(head + " ")]
    if ends and ends[-1] >= limit // 2:
        return head[:ends[-1]].strip()
    space = head.rfind(" ")
    return (head[:space] if space > 0 else head).strip()


def narration_text(article: Article, max_chars: int) -> list[str]:
    """Headline, standfirst, then the body's paragraphs; at most ``max_chars`` characters."""
    parts = [_clean(article.headline)]
    if article.standfirst:
        parts.append(_clean(article.standfirst))
    parts.extend(html_paragraphs(article.body_html) if article.body_html else
                 [p for p in (_clean(x) for x in article.body_text.split("\n")) if p])
    out: list[str] = []
    left = max_chars
    for part in parts:
        if not part:
            continue
        if len(part) > left:
            part = _cut(part, left)
            if part:
                out.append(part)
            break
        out.append(part)
        left -= len(part)
    return out


def word_count(paragraphs: list[str]) -> int:
    return sum(len(_WORD.findall(p)) for p in paragraphs)


def ssml(paragraphs: list[str], pause_ms: int) -> str:
    """SSML for espeak-ng (``-m``): escaped paragraphs with a pause between them."""
    pause = f'<break time="{pause_ms}ms"/>' if pause_ms else " "
    return "<speak>" + pause.join(escape(_XML_BAD.sub(" ", p)) for p in paragraphs) + "</speak>"


def voice_for(language: str, voices: dict[str, str]) -> str | None:
    """The espeak-ng voice for an article language (``kk``, ``ru-RU`` → ``ru``...), or None."""
    lang = (language or "").strip().lower().replace("_", "-")
    if lang in voices:
        return voices[lang]
    primary = lang.split("-", 1)[0]
    if primary == "kz":
        primary = "kk"
    return voices.get(primary)


@dataclass(frozen=True, slots=True)
class WavFormat:
    rate: int
    channels: int
    bits: int
    data_offset: int
    declared_size: int

    @property
    def byte_rate(self) -> int:
        return self.rate * self.channels * self.bits // 8


def parse_wav_header(head: bytes) -> WavFormat | None:
    """The format of a RIFF/WAVE stream from its first bytes; None until ``head`` holds the
    ``data`` chunk header. Raises ValueError if it is not PCM WAV."""
    if len(head) < 12:
        return None
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE stream")
    pos, fmt = 12, None
    while pos + 8 <= len(head):
        ident, size = head[pos:pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        if ident == b"fmt ":
            if pos + 8 + 16 > len(head):
                return None
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", head, pos + 8)
            if tag not in (1, 0xFFFE) or not channels or not rate or bits not in (8, 16, 24, 32):
                raise ValueError(f"unsupported WAV format (tag {tag}, {channels} ch, {rate} Hz, {bits} bits)")
            fmt = (rate, channels, bits)
        elif ident == b"data":
            if fmt is None:
                raise ValueError("WAV data before its format")
            return WavFormat(*fmt, data_offset=pos + 8, declared_size=size)
        pos += 8 + size + (size & 1)
    return None


@dataclass(frozen=True, slots=True)
class Speech:
    data: bytes          # Ogg Opus
    duration_s: float
    words: int
    seconds: float       # wall time of the narration


def stream_serial(article_id: str, version: int) -> int:
    """A fixed Ogg stream serial per article version, so the same input gives the same bytes."""
    try:
        base = int(article_id[:8], 16)
    except ValueError:
        base = sum(article_id.encode()) * 2654435761
    return (base ^ (version * 2654435761)) & 0x7FFFFFFF


class Synthesizer:
    """Runs espeak-ng | opusenc with a concurrency limit, a timeout and a low priority."""

    def __init__(self, settings: NarrationSettings) -> None:
        self.settings = settings
        self._slots = asyncio.Semaphore(settings.concurrency)
        self.problem: str | None = "not checked yet"
        self.running = 0  # narrations in progress

    def _nice(self) -> list[str]:
        nice = shutil.which("nice")
        return [nice, "-n", str(self.settings.nice)] if self.settings.nice and nice else []

    async def check(self) -> str | None:
        """None if the tools and every configured voice work, else what is wrong (kept in
        :attr:`problem`)."""
        problem = None
        for tool, package in ((self.settings.espeak, "espeak-ng"), (self.settings.opusenc, "opus-tools")):
            if shutil.which(tool) is None:
                problem = (f"{tool} not found on PATH: install the Debian package {package} "
                           "(deploy/local/narration-deps.sh installs espeak-ng and opus-tools)")
                break
        if problem is None:
            for language, voice in sorted(self.settings.voices.items()):
                try:
                    speech = await self.synthesize(["test"], voice, title="check", language=language, serial=1)
                    if speech.duration_s <= 0:
                        raise NarrationFailed("no audio")
                except NarrationFailed as exc:
                    problem = f"voice {voice!r} (language {language}) does not work: {exc}"
                    break
        self.problem = problem
        return problem

    async def synthesize(self, paragraphs: list[str], voice: str, *, title: str, language: str, serial: int) -> Speech:
        async with self._slots:
            started = time.perf_counter()
            self.running += 1
            try:
                data, duration = await asyncio.wait_for(
                    self._run(ssml(paragraphs, self.settings.paragraph_pause_ms), voice, title, language, serial),
                    timeout=self.settings.timeout_s)
            except TimeoutError:
                raise NarrationFailed(f"narration took longer than {self.settings.timeout_s}s") from None
            finally:
                self.running -= 1
            return Speech(data=data, duration_s=duration, words=word_count(paragraphs),
                          seconds=time.perf_counter() - started)

    async def _run(self, text: str, voice: str, title: str, language: str, serial: int) -> tuple[bytes, float]:
        """One narration: espeak-ng | opusenc. Interrupted (a stop cancels it), both are killed
        and reaped before the cancellation goes on."""
        s = self.settings
        nice = self._nice()
        pipe = asyncio.subprocess.PIPE
        procs: list[asyncio.subprocess.Process] = []
        try:
            try:
                espeak = await asyncio.create_subprocess_exec(
                    *nice, s.espeak, "-v", voice, "-s", str(s.words_per_minute), "-m", "--stdin", "--stdout",
                    stdin=pipe, stdout=pipe, stderr=pipe)
                procs.append(espeak)
                opus = await asyncio.create_subprocess_exec(
                    *nice, s.opusenc, "--quiet", "--speech", "--bitrate", str(s.bitrate_kbps), "--comp", str(s.complexity),
                    "--serial", str(serial), "--title", title[:200] or "-", "--comment", f"LANGUAGE={language}", "-", "-",
                    stdin=pipe, stdout=pipe, stderr=pipe)
                procs.append(opus)
            except OSError as exc:
                raise NarrationFailed(f"cannot start the speech tools: {exc}") from exc
            assert espeak.stdin and espeak.stdout and espeak.stderr and opus.stdin and opus.stdout and opus.stderr

            async def feed_text() -> None:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    espeak.stdin.write(text.encode("utf-8"))
                    await espeak.stdin.drain()
                espeak.stdin.close()

            async def pump() -> tuple[WavFormat | None, int]:
                head, fmt, total = b"", None, 0
                try:
                    while chunk := await espeak.stdout.read(65536):
                        total += len(chunk)
                        if fmt is None:
                            head += chunk
                            fmt = parse_wav_header(head)
                        opus.stdin.write(chunk)
                        await opus.stdin.drain()
                finally:
                    opus.stdin.close()
                return fmt, total

            _, (fmt, total), encoded, espeak_err, opus_err = await asyncio.gather(
                feed_text(), pump(), opus.stdout.read(), espeak.stderr.read(), opus.stderr.read())
            codes = (await espeak.wait(), await opus.wait())
        except ValueError as exc:  # not a WAV stream
            raise NarrationFailed(f"espeak-ng output: {exc}") from exc
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise NarrationFailed(f"opusenc stopped reading: {exc!r}") from exc
        finally:
            for proc in procs:
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
            for proc in procs:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(_reap(proc), timeout=10)
        if codes[0] != 0 or espeak_err.strip():
            # espeak-ng exits 0 even for an unknown voice; it says so on stderr.
            raise NarrationFailed(f"espeak-ng (voice {voice}) exited {codes[0]}: {espeak_err.decode('utf-8', 'replace')[:300].strip()}")
        if codes[1] != 0:
            raise NarrationFailed(f"opusenc exited {codes[1]}: {opus_err.decode('utf-8', 'replace')[:300].strip()}")
        if fmt is None:
            raise NarrationFailed("espeak-ng wrote no WAV header")
        data_bytes = min(total - fmt.data_offset, fmt.declared_size)
        if data_bytes <= 0 or not encoded:
            raise NarrationFailed("no audio was produced")
        return encoded, data_bytes / fmt.byte_rate


async def _reap(proc: asyncio.subprocess.Process) -> None:
    """Wait for a process to end. ``wait()`` returns only once the process has exited AND its
    pipes are closed, and a pipe whose reader stopped reading (its buffer full, the reading
    task cancelled) is never seen to close: read what is left in them first."""
    if proc.stdin is not None and not proc.stdin.is_closing():
        proc.stdin.close()
    await asyncio.gather(*(stream.read() for stream in (proc.stdout, proc.stderr) if stream is not None))
    await proc.wait()

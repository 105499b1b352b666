"""Pure functions of ingestion: parse and validate bytes, sanitise HTML, normalise.

No I/O here: everything is unit-testable and property-testable.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import re
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any

import nh3
from pydantic import ValidationError

from shared.events import Article, Image, Term, Translation, article_id_for
from shared.ninjs import NinjsItem


class Rejected(Exception):
    """The message breaks the upstream contract; the text says why."""


# --- sanitising -------------------------------------------------------------------------------

ALLOWED_TAGS = {
    "p", "br", "hr", "h2", "h3", "h4", "h5", "h6", "strong", "em", "b", "i", "u", "s", "mark",
    "small", "sub", "sup", "abbr", "cite", "q", "blockquote", "code", "pre", "ul", "ol", "li",
    "dl", "dt", "dd", "a", "figure", "figcaption", "img", "table", "thead", "tbody", "tfoot",
    "tr", "th", "td", "caption", "time", "span",
}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title", "hreflang"},
    "img": {"src", "alt", "width", "height", "title"},
    "abbr": {"title"},
    "q": {"cite"},
    "blockquote": {"cite"},
    "time": {"datetime"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "ol": {"start", "reversed"},
}
ALLOWED_GENERIC_ATTRIBUTES = {"lang", "title"}  # allowed on every tag
ALLOWED_SCHEMES = {"http", "https", "mailto"}
# Dropped with everything inside them (not just the tags).
DROP_WITH_CONTENT = {"script", "style", "iframe", "object", "embed", "noscript", "template", "svg", "math", "textarea", "select", "title"}


def sanitise_html(value: str) -> str:
    """Allow-list sanitising with nh3 (Ammonia): idempotent, never leaves a script vector.

    One pass can serialise a tree that the HTML parser builds differently when it reads it back
    (``<h2><button><h2></h2></button></h2>`` gives ``<h2><h2></h2></h2>``, which parses as two
    headings), so the output is cleaned again until it no longer changes: what is stored reads
    back exactly as stored."""
    out = _clean(value)
    for _ in range(4):
        again = _clean(out)
        if again == out:
            break
        out = again
    return out


def _clean(value: str) -> str:
    return nh3.clean(
        value,
        tags=ALLOWED_TAGS,
        clean_content_tags=DROP_WITH_CONTENT,
        attributes={**ALLOWED_ATTRIBUTES, "*": ALLOWED_GENERIC_ATTRIBUTES},
        url_schemes=ALLOWED_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    ).strip()


_BLOCK_END = re.compile(r"</(p|h[1-6]|li|blockquote|figcaption|dd|dt|tr|pre|table|caption)>|<br\s*/?>|<hr\s*/?>", re.I)
_WS = re.compile(r"[ \t\r\f\v\u00a0]+")
_NL = re.compile(r"\s*\n\s*")


def html_to_text(value: str) -> str:
    """Readable plain text of (already sanitised) HTML: blocks become lines."""
    marked = _BLOCK_END.sub(lambda m: m.group(0) + "\n", value)
    text = html.unescape(nh3.clean(marked, tags=set(), clean_content_tags=DROP_WITH_CONTENT))
    text = _WS.sub(" ", text)
    return _NL.sub("\n", text).strip()


def plain_text(value: str) -> str:
    """One line of plain text (headlines, standfirsts, bylines): tags removed, space folded."""
    text = html.unescape(nh3.clean(value, tags=set(), clean_content_tags=DROP_WITH_CONTENT))
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text)
    return " ".join(text.split())


# --- slugs ------------------------------------------------------------------------------------

_TRANSLIT = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh", "з": "z",
    "и": "i", "й": "i", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r",
    "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh",
    "щ": "shch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "iu", "я": "ia",
    # Kazakh letters
    "ә": "a", "ғ": "g", "қ": "q", "ң": "n", "ө": "o", "ұ": "u", "ү": "u", "һ": "h", "і": "i",
}
_NON_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(text: str, *, max_len: int = 80) -> str:
    lowered = text.lower()
    out = "".join(_TRANSLIT.get(c, c) if c.isalnum() else " " for c in lowered)
    out = unicodedata.normalize("NFKD", out).encode("ascii", "ignore").decode("ascii")
    out = _NON_SLUG.sub("-", out).strip("-")
    if len(out) > max_len:
        out = out[:max_len].rsplit("-", 1)[0] or out[:max_len]
    return out or "article"


# --- language ---------------------------------------------------------------------------------

_LANG_ALIASES = {"kz": "kk", "kaz": "kk", "rus": "ru", "eng": "en"}


def normalise_language(tag: str) -> tuple[str, str]:
    """Returns (primary subtag, normalised full tag): ``"RU-kz"`` → ``("ru", "ru-KZ")``."""
    parts = tag.strip().split("-")
    primary = _LANG_ALIASES.get(parts[0].lower(), parts[0].lower())
    rest = [p.upper() if len(p) == 2 else (p.title() if len(p) == 4 else p.lower()) for p in parts[1:]]
    return primary, "-".join([primary, *rest])


# --- parsing ----------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise Rejected(f"invalid JSON: {name} is not allowed")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise Rejected(f"invalid JSON: duplicate key {key[:80]!r}")
        out[key] = value
    return out


def parse_json(raw: bytes | None, *, max_bytes: int) -> dict[str, Any]:
    if raw is None or len(raw) == 0:
        raise Rejected("empty message")
    if len(raw) > max_bytes:
        raise Rejected(f"message too large: {len(raw)} bytes > {max_bytes}")
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys)
    except Rejected:
        raise
    except RecursionError:
        raise Rejected("invalid JSON: nested too deeply") from None
    except ValueError as exc:
        raise Rejected(f"invalid JSON: {exc}"[:300]) from None
    if not isinstance(obj, dict):
        raise Rejected(f"a ninjs item must be a JSON object, got {type(obj).__name__}")
    try:  # lone surrogates (\ud800) decode in Python but are not text: refuse them here
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise Rejected("invalid JSON: string with a lone surrogate") from None
    except (RecursionError, ValueError):
        raise Rejected("invalid JSON: nested too deeply") from None
    return obj


def _describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        loc = ".".join(str(p) for p in e["loc"]) or "item"
        parts.append(f"{loc}: {e['msg']}")
    more = len(err.errors()) - 5
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def validate_item(obj: dict[str, Any]) -> NinjsItem:
    try:
        return NinjsItem.model_validate(obj)
    except ValidationError as err:
        raise Rejected(f"schema: {_describe(err)}") from None


# --- normalising ------------------------------------------------------------------------------


def _utc(dt: datetime) -> datetime:
    return dt.astimezone(UTC)


def _section_and_tags(item: NinjsItem) -> tuple[Term, list[Term]]:
    terms = [(s, Term(slug=slugify(s.name, max_len=60), name=plain_text(s.name))) for s in item.subjects]
    terms = [(s, t) for s, t in terms if t.name]
    section = next((t for s, t in terms if (s.rel or "").lower() == "section"), None)
    if section is None and terms:
        section = terms[0][1]
    tags: dict[str, Term] = {}
    for _, t in terms:
        if section is None or t.slug != section.slug:
            tags.setdefault(t.slug, t)
    return section or Term(slug="news", name="News"), list(tags.values())[:20]


def _safe_url(href: str) -> str | None:
    href = href.strip()
    if re.match(r"^https?://[^\s\"'<>]+$", href, re.I) or re.match(r"^/[^/\s\"'<>][^\s\"'<>]*$", href):
        return href
    return None


def _lead_image(item: NinjsItem, headline: str) -> Image | None:
    for name, assoc in item.associations.items():
        if (assoc.type or "") not in ("picture", "image", "graphic") and not name.startswith("featureimage"):
            continue
        renditions = sorted(assoc.renditions.values(), key=lambda r: (r.width or 0), reverse=True)
        for r in renditions:
            href = _safe_url(r.href)
            if href:
                alt = plain_text(assoc.altText or "") or plain_text(
                    next((d.value for d in assoc.descriptions), "")
                )
                caption = plain_text(next((h.value for h in assoc.headlines), "")) or None
                return Image(href=href, alt=alt[:500] or headline[:200], caption=caption, width=r.width, height=r.height)
    return None


def _translations(item: NinjsItem, language: str) -> list[Translation]:
    """Associations named ``translation…`` (e.g. ``translation-ru``) with a ``uri`` and a
    ``language``: the same story in another language; one per language, never itself."""
    found: dict[str, Translation] = {}
    own_uri = item.uri.strip()
    for name, assoc in sorted(item.associations.items()):
        if not name.lower().startswith("translation") or not assoc.uri or not assoc.language:
            continue
        lang = normalise_language(assoc.language)[0]
        uri = assoc.uri.strip()
        if lang == language or uri == own_uri or lang in found:
            continue
        found[lang] = Translation(language=lang, id=article_id_for(uri), uri=uri)
    return list(found.values())


def content_hash(article_fields: dict[str, Any]) -> str:
    canonical = json.dumps(article_fields, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def normalise(item: NinjsItem, *, now: datetime, max_clock_skew_s: int = 86_400, words_per_minute: int = 200) -> Article:
    version_created = _utc(item.version_created)
    if version_created > now + timedelta(seconds=max_clock_skew_s):
        raise Rejected(f"versionCreated {version_created.isoformat()} is in the future")
    first_created = _utc(item.first_created) if item.first_created else version_created
    first_created = min(first_created, version_created)
    headline = plain_text(item.main_headline or "")
    if not headline:
        raise Rejected("headline is empty after removing markup")
    language, language_tag = normalise_language(item.language)
    standfirst = plain_text(item.summary or "") or None
    body_html = ""
    body_text = ""
    if item.pub_status != "canceled":
        body = item.main_body
        if body is not None:
            body_html = sanitise_html(body.value)
            body_text = html_to_text(body_html)
        if item.pub_status == "usable" and not body_text:
            raise Rejected("bodies: the main body is empty after sanitising")
    section, tags = _section_and_tags(item)
    words = len(re.findall(r"\w+", body_text))
    byline = plain_text(item.by or "") or (", ".join(plain_text(p.name) for p in item.people if (p.role or "author") in ("author", "writer")) or None)
    image = _lead_image(item, headline)
    translations = _translations(item, language)
    fields: dict[str, Any] = dict(
        headline=headline,
        standfirst=standfirst,
        body_html=body_html,
        byline=byline,
        section=section.model_dump(),
        tags=[t.model_dump() for t in tags],
        language=language_tag,
        pub_status=item.pub_status,
        embargoed_until=item.embargoed_until,
        image=image.model_dump() if image else None,
    )
    if translations:  # only then: hashes of articles without translations stay as they were
        fields["translations"] = [t.model_dump() for t in translations]
    return Article(
        id=article_id_for(item.uri),
        uri=item.uri.strip(),
        version=item.version,
        version_created=version_created,
        first_created=first_created,
        pub_status=item.pub_status,
        embargoed_until=_utc(item.embargoed_until) if item.embargoed_until else None,
        language=language,
        language_tag=language_tag,
        headline=headline,
        standfirst=standfirst,
        body_html=body_html,
        body_text=body_text,
        byline=byline[:1000] if byline else None,
        section=section,
        tags=tags,
        slug=slugify(headline),
        word_count=words,
        reading_time_min=max(1, math.ceil(words / words_per_minute)) if words else 0,
        content_hash=content_hash(fields),
        lead_image=image,
        copyright_notice=plain_text(item.copyright_notice or "") or None,
        sources=[plain_text(s.name or s.uri or "") for s in item.info_sources if (s.name or s.uri)][:20],
        translations=translations,
    )


def article_from_bytes(raw: bytes | None, *, now: datetime, max_bytes: int = 2_000_000, max_clock_skew_s: int = 86_400, words_per_minute: int = 200) -> Article:
    """bytes → validated, sanitised, normalised :class:`Article`, or :class:`Rejected`."""
    item = validate_item(parse_json(raw, max_bytes=max_bytes))
    return normalise(item, now=now, max_clock_skew_s=max_clock_skew_s, words_per_minute=words_per_minute)

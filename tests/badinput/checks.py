"""What "handled" means for one input, as plain functions returning the problems found."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

from services.ingestion.normalise import ALLOWED_ATTRIBUTES, ALLOWED_GENERIC_ATTRIBUTES, ALLOWED_SCHEMES, ALLOWED_TAGS

_SCHEME = re.compile(r"^\s*([a-zA-Z][a-zA-Z0-9+.-]*):")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
URL_ATTRIBUTES = {"href", "src", "cite"}


class _AllowListChecker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ALLOWED_TAGS:
            self.problems.append(f"tag <{tag}> outside the allow-list")
            return
        allowed = ALLOWED_ATTRIBUTES.get(tag, set()) | ALLOWED_GENERIC_ATTRIBUTES | ({"rel"} if tag == "a" else set())
        for name, value in attrs:
            if name not in allowed:
                self.problems.append(f"attribute {name!r} on <{tag}>")
            if name in URL_ATTRIBUTES and value:
                match = _SCHEME.match(value)
                if match and match.group(1).lower() not in ALLOWED_SCHEMES:
                    self.problems.append(f"{name} with scheme {match.group(1)!r}")

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag: str) -> None:
        if tag not in ALLOWED_TAGS:
            self.problems.append(f"end tag </{tag}> outside the allow-list")


def html_problems(body_html: str) -> list[str]:
    """Tags, attributes or URL schemes outside the sanitiser's allow-list (none = safe)."""
    checker = _AllowListChecker()
    checker.feed(body_html)
    checker.close()
    return checker.problems


def article_problems(article: dict[str, Any]) -> list[str]:
    """An ingested article (``ArticleIngested.article`` as JSON) whose content is not safe."""
    problems = html_problems(article.get("body_html") or "")
    for field in ("headline", "standfirst", "byline", "copyright_notice"):
        value = article.get(field) or ""
        if _CONTROL.search(value):
            problems.append(f"{field} holds control characters")
        if "\n" in value:
            problems.append(f"{field} is not one line")
    image = article.get("lead_image")
    if image and not re.match(r"^(https?://|/[^/])", image["href"], re.I):
        problems.append(f"lead image href {image['href'][:60]!r}")
    for term in [article.get("section") or {}, *article.get("tags", [])]:
        if term and not re.fullmatch(r"[a-z0-9-]{1,80}", term.get("slug", "")):
            problems.append(f"slug {term.get('slug')!r}")
    if not re.fullmatch(r"[a-z0-9-]{1,80}", article.get("slug", "")):
        problems.append(f"article slug {article.get('slug')!r}")
    return problems


def error_shape_problems(status: int, body: Any) -> list[str]:
    """The API's error shape: ``{"error": {"status": <the HTTP status>, "code", "message"}}``."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return ["error body is not {'error': {...}}"]
    error = body["error"]
    problems = []
    if error.get("status") != status:
        problems.append(f"error.status {error.get('status')!r} != HTTP {status}")
    if not isinstance(error.get("code"), str) or not error.get("code"):
        problems.append("error.code missing")
    if not isinstance(error.get("message"), str) or not error.get("message"):
        problems.append("error.message missing")
    return problems


def filter_problems(command_name: str, command: dict[str, Any]) -> list[str]:
    """A database command the gateway sent whose shape a request could have changed.

    The gateway only ever reads one document by id: ``find`` with the filter ``{"_id": <str>}``.
    """
    if command_name in {"ping", "endSessions", "hello", "isMaster", "ismaster", "buildInfo", "getMore", "killCursors"}:
        return []
    if command_name != "find":
        return [f"unexpected command {command_name!r}"]
    flt = command.get("filter")
    if not isinstance(flt, dict) or list(flt) != ["_id"] or not isinstance(flt["_id"], str):
        return [f"find filter {str(flt)[:120]}"]
    extra = set(command) - {"find", "filter", "limit", "singleBatch", "batchSize", "lsid", "$db", "$clusterTime",
                            "maxTimeMS", "$readPreference", "txnNumber", "readConcern", "projection"}
    if extra:
        return [f"find with {sorted(extra)}"]
    return []

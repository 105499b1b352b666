"""The bad-input corpora of ``../shared/data/badinput`` (see its README), loaded and sampled.

- strings: the Big List of Naughty Strings, the XSS payload lists and the NoSQL injection list,
  each a list of ``(label, string)``;
- bodies: raw message bodies: every JSONTestSuite parsing case, the BLNS strings as bytes (plain
  and base64-decoded), and hand-made hostile JSON (deep nesting, NaN/Infinity in a ninjs item,
  lone surrogates, operator and dotted keys, an oversized item).

``sample(items, n)`` takes ``n`` items evenly spread over a list (deterministic), so the CI run
sees every part of every list; ``n=None`` keeps everything (``make badinput``).
"""

from __future__ import annotations

import base64
import binascii
import json
import pathlib
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
ROOT = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "badinput"


@dataclass(frozen=True, slots=True)
class Body:
    label: str
    raw: bytes
    expect: str | None = None  # a word the dead-letter reason must contain (None: any clear reason)


def available(root: pathlib.Path = ROOT) -> bool:
    return (root / "blns" / "blns.json").is_file() and (root / "jsontestsuite" / "test_parsing").is_dir()


def sample(items: list[T], n: int | None) -> list[T]:
    if n is None or n >= len(items):
        return list(items)
    if n <= 0:
        return []
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def blns(root: pathlib.Path = ROOT) -> list[tuple[str, str]]:
    strings = json.loads((root / "blns" / "blns.json").read_text(encoding="utf-8"))
    return [(f"blns:{i}", s) for i, s in enumerate(strings)]


def xss(root: pathlib.Path = ROOT) -> list[tuple[str, str]]:
    """Every distinct non-empty line of every XSS list (bare event-handler names included)."""
    seen: set[str] = set()
    out = []
    for path in sorted((root / "payloadsallthethings" / "xss").glob("*.txt")):
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="surrogateescape").splitlines(), 1):
            line = line.strip("\r")
            if line.strip() and line not in seen:
                try:
                    line.encode("utf-8")
                except UnicodeEncodeError:  # undecodable bytes in a list: keep them as replacement chars
                    line = line.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                seen.add(line)
                out.append((f"xss:{path.stem}:{n}", line))
    return out


EXTRA_NOSQL = [
    '{"$gt": ""}', '{"$ne": null}', '{"$where": "sleep(5000)"}', '{"$regex": ".*"}', "[$ne]=1", "$where",
    "a.b", "$gt", "{'$gt': ''}", '{"_id": {"$exists": true}}', "{\"$expr\": {\"$eq\": [1, 1]}}",
]


def nosql(root: pathlib.Path = ROOT) -> list[tuple[str, str]]:
    lines = (root / "payloadsallthethings" / "nosql" / "NoSQL.txt").read_text(encoding="utf-8").splitlines()
    out = [(f"nosql:{n}", line) for n, line in enumerate(lines, 1) if line.strip()]
    return out + [(f"nosql:extra:{n}", s) for n, s in enumerate(EXTRA_NOSQL)]


# Lengths the corpora lack: longer than a file name may be (255 bytes), in one and two bytes a character.
LONG = [("long:ascii", "a" * 1000), ("long:cyrillic", "Я" * 300)]


def strings(n_per_corpus: int | None = None, root: pathlib.Path = ROOT) -> list[tuple[str, str]]:
    """BLNS + XSS (sampled to ``n_per_corpus`` each) + every NoSQL line + the long strings."""
    return sample(blns(root), n_per_corpus) + sample(xss(root), n_per_corpus) + nosql(root) + LONG


# --- whole message bodies ---------------------------------------------------------------------

def _valid_item(uri: str) -> dict:
    return {
        "uri": uri, "type": "text", "version": 1, "versionCreated": "2026-11-27T08:00:00+05:00",
        "pubStatus": "usable", "language": "en", "headlines": [{"role": "main", "value": "Headline"}],
        "bodies": [{"role": "main", "contentType": "text/html", "value": "<p>Body.</p>"}],
    }


def hostile_bodies(uri: str) -> list[Body]:
    """Hand-made bodies around one otherwise valid item (the parts a generic corpus lacks)."""
    good = json.dumps(_valid_item(uri))
    out = [
        Body("deep:array", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        Body("deep:object", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "nested too deeply"),
        Body("deep:in-item", good[:-1].encode() + b', "x": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", "nested too deeply"),
        Body("nan:version", good.replace('"version": 1', '"version": NaN').encode(), "NaN"),
        Body("nan:everywhere", json.dumps({**_valid_item(uri), "version": float("nan"),
                                           "x": [float("inf"), float("-inf")]}).encode(), "NaN"),
        Body("inf:field", good.replace('"version": 1', '"version": Infinity').encode(), "Infinity"),
        Body("neg-inf:field", good.replace('"version": 1', '"version": -Infinity').encode(), "Infinity"),
        Body("surrogate:headline", good.replace('"Headline"', '"\\udc00bad"').encode(), "surrogate"),
        Body("duplicate:key", good.replace('"version": 1', '"version": 1, "version": 2').encode(), "duplicate"),
        Body("empty", b"", "empty"),
        Body("not-utf8", b'{"uri": "\xff\xfe"}', "UTF-8"),
        Body("utf16", good.encode("utf-16"), "UTF-8"),
        # Over the suite's ingestion limit (500 kB there), under the broker's message size.
        Body("oversized", good[:-1].encode() + b', "pad": "' + b"x" * 600_000 + b'"}', "too large"),
        Body("array:of-items", f"[{good}]".encode(), "JSON object"),
        Body("operator:version", good.replace('"version": 1', '"version": {"$gt": 0}').encode(), "version"),
        Body("operator:uri", good.replace(f'"uri": {json.dumps(uri)}', '"uri": {"$ne": null}').encode(), "uri"),
        Body("operator:headlines", good.replace('"headlines": [{"role": "main", "value": "Headline"}]',
                                                '"headlines": {"$where": "1 == 1"}').encode(), "headlines"),
    ]
    return out


def parsing_cases(root: pathlib.Path = ROOT) -> list[Body]:
    out = []
    for folder in ("test_parsing", "test_transform"):
        for path in sorted((root / "jsontestsuite" / folder).glob("*.json")):
            out.append(Body(f"jsonts:{folder}:{path.name}", path.read_bytes()))
    return out


def string_bodies(root: pathlib.Path = ROOT) -> list[Body]:
    out = [Body(label, s.encode("utf-8", "surrogatepass")) for label, s in blns(root)]
    for i, encoded in enumerate(json.loads((root / "blns" / "blns.base64.json").read_text())):
        try:
            out.append(Body(f"blns64:{i}", base64.b64decode(encoded)))
        except (binascii.Error, ValueError):
            continue
    return out


def bodies(uri: str, n_strings: int | None = None, root: pathlib.Path = ROOT) -> list[Body]:
    """Every parsing case and hostile body, plus the BLNS bodies (sampled to ``n_strings``)."""
    return hostile_bodies(uri) + parsing_cases(root) + sample(string_bodies(root), n_strings)

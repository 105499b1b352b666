"""JSON-Schema snapshots of every event and of the upstream contract.

A change to an event model changes its schema; this test then fails until the snapshot is
regenerated on purpose (``python -m tests.unit.test_event_schemas``) and reviewed: schemas
evolve additively (new optional fields only), which :func:`test_snapshot_changes_are_additive`
checks against the committed snapshot.
"""

from __future__ import annotations

import json
import pathlib
from datetime import UTC, datetime

import pytest

from shared.events import EVENT_MODELS, Article, ArticleIngested, IngestedEvent, parse_event
from shared.ninjs import NinjsItem

SNAPSHOTS = pathlib.Path(__file__).resolve().parents[1] / "schemas"
SCHEMAS = {
    **{name: model for name, model in EVENT_MODELS.items()},
    "upstream.ninjs": NinjsItem,
}


def current_schema(name: str) -> dict:
    model = SCHEMAS[name]
    return model.model_json_schema(by_alias=True, mode="validation")


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_schema_matches_snapshot(name):
    path = SNAPSHOTS / f"{name}.schema.json"
    assert path.exists(), f"missing snapshot {path.name}: run python -m tests.unit.test_event_schemas"
    assert json.loads(path.read_text()) == current_schema(name), f"{name} changed: review and regenerate the snapshot"


def _properties(schema: dict) -> dict[str, tuple[dict, set]]:
    out = {}
    for def_name, d in {"<root>": schema, **schema.get("$defs", {})}.items():
        out[def_name] = (d.get("properties", {}), set(d.get("required", [])))
    return out


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_snapshot_changes_are_additive(name):
    """Every field of the snapshot still exists, and no field became required."""
    old = _properties(json.loads((SNAPSHOTS / f"{name}.schema.json").read_text()))
    new = _properties(current_schema(name))
    for def_name, (props, required) in old.items():
        assert def_name in new, f"{def_name} disappeared"
        new_props, new_required = new[def_name]
        assert set(props) <= set(new_props), f"{def_name}: fields removed {set(props) - set(new_props)}"
        assert new_required <= required, f"{def_name}: newly required {new_required - required}"


def test_event_round_trip():
    article = Article(
        id="0123456789abcdef", uri="urn:x", version=1, version_created=datetime(2026, 1, 1, tzinfo=UTC),
        first_created=datetime(2026, 1, 1, tzinfo=UTC), pub_status="usable", language="kk", language_tag="kk",
        headline="Тест", slug="test", content_hash="h",
    )
    event = IngestedEvent(producer="test", correlation_id="c1", payload=ArticleIngested(article=article))
    parsed = parse_event(event.to_bytes())
    assert parsed == event and parsed.event_type == "article.ingested" and parsed.schema_version == 1


def test_unknown_event_type_rejected():
    with pytest.raises(ValueError, match="unknown event_type"):
        parse_event(b'{"event_type": "article.exploded"}')


def write_snapshots() -> None:
    SNAPSHOTS.mkdir(exist_ok=True)
    for name in SCHEMAS:
        (SNAPSHOTS / f"{name}.schema.json").write_text(json.dumps(current_schema(name), indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    write_snapshots()

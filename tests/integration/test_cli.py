"""The operator CLI against the real broker: list dead letters and replay them."""

from __future__ import annotations

import json

import pytest

from shared.cli import CliSettings, cmd_dlq
from tests.integration.helpers import eventually, ninjs


def entries(out: str) -> list[dict]:
    """The CLI's JSON lines (other lines on stdout are the services' logs)."""
    found = []
    for line in out.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and "partition" in item and "offset" in item:
            found.append(item)
    return found

pytestmark = pytest.mark.integration


async def test_dead_letter_is_listed_and_replayed_to_its_source(pipeline, producer, run_id, capsys):
    uri = f"urn:test:{run_id}:replayed"
    dlq = pipeline.kafka.topic_upstream_dlq
    # A message dead-lettered after a transient failure (say, a long database outage).
    await producer.send_and_wait(dlq, json.dumps(ninjs(uri, headline="Replayed from the dead-letter topic")).encode(),
                                 key=uri.encode(), headers=[
                                     ("dlq.reason", b"transient failure after 10 attempts: timeout"),
                                     ("dlq.source_topic", pipeline.kafka.topic_upstream.encode()),
                                     ("dlq.source_partition", b"0"), ("dlq.source_offset", b"7"),
                                     ("dlq.attempts", b"10"), ("correlation_id", b"replay-test")])
    settings = CliSettings(kafka=pipeline.kafka)
    assert await cmd_dlq(settings, dlq, 1000) == 0
    listed = entries(capsys.readouterr().out)
    entry = next(e for e in listed if e["key"] == uri)
    assert entry["reason"].startswith("transient failure") and entry["attempts"] == "10"

    assert await cmd_dlq(settings, dlq, 1000, replay=True, offsets={(entry["partition"], entry["offset"])}) == 0
    replayed = entries(capsys.readouterr().out)
    assert [e["replayed"] for e in replayed] == [f"to {pipeline.kafka.topic_upstream}"]

    async def readable():
        status, body = await pipeline.get_json(f"/api/v1/articles?uri={uri}")
        return body if status == 200 else None
    body = await eventually(readable, what="the replayed article")
    assert body["headline"] == "Replayed from the dead-letter topic"

"""An item published with a plain Kafka client (Debian's kcat) is readable through the API."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from shared.events import article_id_for
from tests.integration.helpers import eventually, ninjs

pytestmark = pytest.mark.integration


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed (deploy/local/stack.sh install adds it)")
async def test_kcat_published_item_is_readable(pipeline, run_id, tmp_path):
    uri = f"urn:test:{run_id}:kcat"
    path = tmp_path / "item.json"
    path.write_text(json.dumps(ninjs(uri, headline="Published with kcat")))
    subprocess.run(
        ["kcat", "-P", "-b", pipeline.kafka.bootstrap_servers, "-t", pipeline.kafka.topic_upstream,
         "-X", "partitioner=murmur2_random", "-k", uri, str(path)],
        check=True, capture_output=True, timeout=30,
    )

    async def readable():
        status, body = await pipeline.get_json(f"/api/v1/articles?uri={uri}")
        return body if status == 200 else None

    body = await eventually(readable, what="the kcat-published article")
    assert body["id"] == article_id_for(uri) and body["headline"] == "Published with kcat"
    status, html, _ = await pipeline.get(f"/articles/{body['id']}/published-with-kcat")
    assert status == 200 and "Published with kcat" in html

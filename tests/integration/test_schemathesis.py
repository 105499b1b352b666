"""schemathesis against the OpenAPI document the real gateway serves (on the real stack, with
articles stored): zero 5xx, and every response conforms to the document (status code, content
type, headers, schema), valid input is accepted and invalid input refused.

schemathesis runs as its own process (its command line, every phase: examples, coverage,
fuzzing, stateful) while the gateway keeps serving in this test's event loop.
"""

from __future__ import annotations

import asyncio
import sys

import pytest

from tests.integration.helpers import eventually, ninjs, publish

pytestmark = pytest.mark.integration

# Every check schemathesis has, except those about authentication (the API has none).
CHECKS = [
    "not_a_server_error", "status_code_conformance", "content_type_conformance", "response_headers_conformance",
    "response_schema_conformance", "negative_data_rejection", "positive_data_acceptance",
    "missing_required_header", "unsupported_method", "allow_header_conformance", "use_after_free",
    "ensure_resource_availability",
]
MAX_EXAMPLES = 40


async def test_schemathesis_finds_nothing(pipeline, producer, run_id, artifacts_dir):
    uris = [f"urn:test:{run_id}:st:{n}" for n in range(3)]
    for n, uri in enumerate(uris):
        await publish(producer, pipeline.kafka.topic_upstream, ninjs(
            uri, headline=f"Schema probe {n} on the steppe", section="Society", tags=("Probes",),
            body=f"<p>Probe {n}: rangers counted steppe eagles in Altyn-Emel.</p>"))
    for uri in uris:
        async def readable(uri=uri):
            status, _ = await pipeline.get_json(f"/api/v1/articles?uri={uri}")
            return status == 200
        await eventually(readable, what=f"article {uri}")

    seed = int(run_id, 16) % 2**31
    report = artifacts_dir / "schemathesis"
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{pipeline.base_url}/api/v1/openapi.json",
        "--checks", ",".join(CHECKS), "--max-examples", str(MAX_EXAMPLES), "--seed", str(seed),
        "--workers", "2", "--generation-database", "none", "--no-color", "--request-timeout", "20",
        "--report", "junit", "--report-dir", str(report),
    ]
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT)
    output, _ = await process.communicate()
    text = output.decode("utf-8", "replace")
    (artifacts_dir / "schemathesis.txt").write_text(text, encoding="utf-8")
    assert process.returncode == 0, f"schemathesis (seed {seed}) found problems:\n{text[-20000:]}"
    assert "API Operations" in text and "5xx" not in text.lower().replace("no 5xx", "")


async def test_section_and_tag_together_is_the_tags_articles_in_that_section(pipeline, producer, run_id):
    """What schemathesis first found: both are valid per the document, so both together must work."""
    inside = ninjs(f"urn:test:{run_id}:st:inside", headline="Tagged and in the section", section="Culture",
                   tags=(f"pair-{run_id}",))
    outside = ninjs(f"urn:test:{run_id}:st:outside", headline="Tagged, another section", section="Sport",
                    tags=(f"pair-{run_id}",))
    for item in (inside, outside):
        await publish(producer, pipeline.kafka.topic_upstream, item)

    async def both_listed():
        status, body = await pipeline.get_json(f"/api/v1/articles?tag=pair-{run_id}")
        return body if status == 200 and len(body["items"]) == 2 else None
    await eventually(both_listed, what="both tagged articles")
    status, body = await pipeline.get_json(f"/api/v1/articles?tag=pair-{run_id}&section=culture")
    assert status == 200
    assert [i["headline"] for i in body["items"]] == ["Tagged and in the section"]
    status, body = await pipeline.get_json(f"/api/v1/articles?tag=pair-{run_id}&section=politics")
    assert (status, body["items"]) == (200, [])


async def test_an_undeclared_method_gets_405_with_allow(pipeline):
    async with pipeline.http.request("TRACE", pipeline.base_url + "/api/v1/sections") as r:
        assert r.status == 405 and "GET" in r.headers.get("Allow", "")
        assert (await r.json())["error"]["status"] == 405

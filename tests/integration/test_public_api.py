"""The public JSON API answers what its OpenAPI document promises (real responses validated)."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from tests.integration.helpers import eventually, ninjs, publish

pytestmark = pytest.mark.integration


def validator(doc: dict, name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": doc["components"]})


async def test_responses_match_the_openapi_document(pipeline, producer, run_id):
    status, doc = await pipeline.get_json("/api/v1/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    Draft202012Validator.check_schema({"components": doc["components"]})
    uri = f"urn:test:{run_id}:api"
    await publish(producer, pipeline.kafka.topic_upstream, ninjs(
        uri, headline="Steppe eagles counted in Altyn-Emel", section="Society", tags=("Wildlife",),
        body="<p>Rangers in Altyn-Emel national park counted 120 steppe eagles this autumn.</p>"))

    async def article():
        s, body = await pipeline.get_json(f"/api/v1/articles?uri={uri}")
        return body if s == 200 else None
    body = await eventually(article, what="the article")
    validator(doc, "Article").validate(body)

    status, listing = await pipeline.get_json("/api/v1/articles?section=society&limit=5")
    assert status == 200
    validator(doc, "Listing").validate(listing)
    assert any(i["id"] == body["id"] for i in listing["items"])

    status, sections = await pipeline.get_json("/api/v1/sections")
    assert status == 200
    validator(doc, "Sections").validate(sections)
    assert {"slug": "society", "name": "Society"} in sections["sections"]

    async def found():
        s, result = await pipeline.get_json("/api/v1/search?q=steppe%20eagles")
        return result if s == 200 and any(i["id"] == body["id"] for i in result["items"]) else None
    result = await eventually(found, what="the search hit")
    validator(doc, "Search").validate(result)
    status, html, _ = await pipeline.get("/search?q=steppe%20eagles")
    assert status == 200 and "<mark>eagles</mark>" in html and "Altyn-Emel" in html


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/articles?limit=0", "/api/v1/articles?limit=abc", "/api/v1/articles?section=Bad%20Slug",
        "/api/v1/articles?cursor=nonsense", "/api/v1/articles?lang=english", "/api/v1/articles?section=a&section=b",
        "/api/v1/articles?uri=", "/api/v1/search?q=", "/api/v1/search?q=x&page=0", "/api/v1/search?q=x&lang=de",
        "/api/v1/articles?section[$ne]=1", "/api/v1/articles?uri[$gt]=",
    ],
)
async def test_bad_parameters_get_400_with_a_reason(pipeline, path):
    status, body = await pipeline.get_json(path)
    assert status == 400, (path, body)
    assert body["error"]["status"] == 400 and body["error"]["message"]


async def test_unknown_and_malformed_ids_get_json_404(pipeline):
    for path in ("/api/v1/articles/0000000000000000", "/api/v1/articles/not-an-id", "/api/v1/articles/%7B%22$gt%22:%22%22%7D"):
        status, body = await pipeline.get_json(path)
        assert status == 404 and body["error"]["code"] == "not_found", path

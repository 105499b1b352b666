"""The public API's OpenAPI 3.1 document (served at /api/v1/openapi.json).

Tests validate real responses against the schemas here, so the document and the
implementation cannot drift apart unnoticed.
"""

from __future__ import annotations

from typing import Any

# Something besides white space, by Python's and by JSON Schema's definition (the gateway checks q with it).
NOT_BLANK = r"[^\s\x1c-\x1f\x85\ufeff]"

TERM = {"type": "object", "required": ["slug", "name"], "properties": {"slug": {"type": "string"}, "name": {"type": "string"}}}
DATETIME = {"type": "string", "format": "date-time"}
ERROR = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["status", "code", "message"], "properties": {
        "status": {"type": "integer"}, "code": {"type": "string"}, "message": {"type": "string"}}}},
}
TEASER = {
    "type": "object",
    "required": ["id", "headline", "language", "url", "published_at", "updated_at"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
        "headline": {"type": "string"},
        "standfirst": {"type": ["string", "null"]},
        "language": {"type": "string"},
        "section": {"anyOf": [TERM, {"type": "null"}]},
        "url": {"type": "string", "format": "uri"},
        "published_at": DATETIME,
        "updated_at": DATETIME,
    },
}
RELATED = {
    "type": "object", "required": ["id", "headline", "language", "url", "published_at"],
    "properties": {"id": {"type": "string"}, "headline": {"type": "string"}, "language": {"type": "string"},
                   "url": {"type": "string"}, "published_at": DATETIME, "score": {"type": ["number", "null"]}},
}
ARTICLE = {
    "type": "object",
    "required": ["id", "uri", "url", "version", "pub_status", "language", "headline", "body_html",
                 "published_at", "updated_at", "related", "tags"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
        "uri": {"type": "string"},
        "url": {"type": "string"},
        "version": {"type": "integer", "minimum": 1},
        "pub_status": {"const": "usable"},
        "language": {"type": "string"},
        "headline": {"type": "string"},
        "standfirst": {"type": ["string", "null"]},
        "byline": {"type": ["string", "null"]},
        "body_html": {"type": "string", "description": "sanitised HTML"},
        "section": {"anyOf": [TERM, {"type": "null"}]},
        "tags": {"type": "array", "items": TERM},
        "published_at": DATETIME,
        "updated_at": DATETIME,
        "word_count": {"type": "integer"},
        "reading_time_min": {"type": "integer"},
        "image": {"anyOf": [{"type": "object", "required": ["href", "alt"], "properties": {
            "href": {"type": "string"}, "alt": {"type": "string"}, "caption": {"type": ["string", "null"]},
            "width": {"type": ["integer", "null"]}, "height": {"type": ["integer", "null"]}}}, {"type": "null"}]},
        "related": {"type": "array", "items": RELATED},
        "audio": {"anyOf": [{"type": "object", "required": ["url", "content_type", "duration_s", "language"], "properties": {
            "url": {"type": "string", "description": "Ogg Opus narration; supports HTTP Range"},
            "content_type": {"type": "string"}, "duration_s": {"type": "integer", "minimum": 0},
            "language": {"type": "string"}}}, {"type": "null"}]},
    },
}
LISTING = {
    "type": "object", "required": ["items", "next_cursor"],
    "properties": {"items": {"type": "array", "items": TEASER}, "next_cursor": {"type": ["string", "null"]}},
}
SEARCH = {
    "type": "object", "required": ["query", "total", "items", "page"],
    "properties": {"query": {"type": "string"}, "total": {"type": "integer"}, "page": {"type": "integer"},
                   "terms": {"type": "array", "items": {"type": "string"}},
                   "items": {"type": "array", "items": {"allOf": [TEASER, {"type": "object", "properties": {"score": {"type": "number"}}}]}}},
}
SECTIONS = {"type": "object", "required": ["sections"], "properties": {"sections": {"type": "array", "items": TERM}}}


def _json(schema_ref: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}}}


BAD_REQUEST = _json("Error", "bad request: the reason is in the body. A request line or header beyond the HTTP "
                              "server's limits (32 KiB) is refused before it reaches the API, in plain text.")
BAD_REQUEST["content"]["text/plain"] = {"schema": {"type": "string"}}
ERRORS = {"400": BAD_REQUEST, "404": _json("Error", "not found"),
          "503": _json("Error", "temporarily unavailable (the database did not answer); retry after Retry-After")}


def document(base_url: str) -> dict[str, Any]:
    q = lambda name, schema, desc, required=False: {  # noqa: E731
        "name": name, "in": "query", "required": required, "schema": schema, "description": desc}
    return {
        "openapi": "3.1.0",
        "info": {"title": "KazPost public API", "version": "1.0.0",
                 "description": "Articles of Kazakhstan News. Errors are JSON with a stable shape."},
        "servers": [{"url": base_url.rstrip("/")}],
        "paths": {
            "/api/v1/articles": {"get": {
                "operationId": "listArticles",
                "summary": "One article by its ninjs uri, or a page of the latest articles",
                "description": "With `uri`, the other parameters are not used. `section` and `tag` together: "
                               "the tag's articles in that section.",
                "parameters": [
                    q("uri", {"type": "string", "minLength": 1, "maxLength": 2048, "pattern": NOT_BLANK}, "the article's ninjs uri; when given, the answer is one article"),
                    q("section", {"type": "string", "pattern": "^[a-z0-9-]{1,100}$"}, "section slug"),
                    q("tag", {"type": "string", "pattern": "^[a-z0-9-]{1,100}$"}, "tag slug"),
                    q("lang", {"type": "string", "pattern": "^[a-z]{2,3}$"}, "language code"),
                    q("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}, "page size"),
                    q("cursor", {"type": "string", "pattern": "^[0-9]{1,15}-[0-9a-f]{16}$"}, "next_cursor of the previous page"),
                ],
                "responses": {"200": {"description": "an article (with uri) or a listing page", "content": {"application/json": {
                    "schema": {"oneOf": [{"$ref": "#/components/schemas/Article"}, {"$ref": "#/components/schemas/Listing"}]}}},
                    "links": {"FirstItem": {"operationId": "getArticle", "parameters": {"id": "$response.body#/items/0/id"}},
                              "NextPage": {"operationId": "listArticles",
                                           "parameters": {"cursor": "$response.body#/next_cursor"}}}},
                    **ERRORS, "410": _json("Error", "the article was withdrawn")},
            }},
            "/api/v1/articles/{id}": {"get": {
                "operationId": "getArticle",
                "summary": "One article by id",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"},
                                "description": "16 hexadecimal digits; anything else is not found"}],
                "responses": {"200": {**_json("Article", "the article with its related articles"), "links": {
                                  "FirstRelated": {"operationId": "getArticle",
                                                   "parameters": {"id": "$response.body#/related/0/id"}}}},
                              **ERRORS, "410": _json("Error", "the article was withdrawn")},
            }},
            "/api/v1/search": {"get": {
                "operationId": "search",
                "summary": "Full-text search across kk, ru and en",
                "parameters": [q("q", {"type": "string", "minLength": 1, "maxLength": 200, "pattern": NOT_BLANK},
                                 "the query (not only white space)", True),
                               q("lang", {"type": "string", "enum": ["kk", "ru", "en"]}, "restrict to one language"),
                               q("page", {"type": "integer", "minimum": 1, "maximum": 50, "default": 1}, "result page")],
                "responses": {"200": {**_json("Search", "ranked results"), "links": {"FirstHit": {
                                  "operationId": "getArticle", "parameters": {"id": "$response.body#/items/0/id"}}}},
                              "400": _json("Error", "bad request"),
                              "503": _json("Error", "search is unavailable")},
            }},
            "/api/v1/sections": {"get": {
                "operationId": "listSections",
                "summary": "The sections that have articles",
                "responses": {"200": _json("Sections", "sections, by name")},
            }},
        },
        "components": {"schemas": {"Article": ARTICLE, "Listing": LISTING, "Teaser": TEASER, "Search": SEARCH,
                                   "Sections": SECTIONS, "Error": ERROR}},
    }

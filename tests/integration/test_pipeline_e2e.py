"""End to end, against the real broker and database: upstream publish → reader.

Upstream items are published with a plain Kafka producer, exactly as a publisher would, and
read back through the gateway's JSON API and HTML pages.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import re
import subprocess

import pytest
from aiokafka import AIOKafkaConsumer

from shared.events import article_id_for
from tests.integration.helpers import eventually, ninjs, publish

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

REPO = pathlib.Path(__file__).resolve().parents[2]

RAIL_BODY = (
    "<p>The new high-speed railway between Astana and Almaty carried its first passengers on Monday. "
    "Kazakhstan Temir Zholy said the Astana Almaty trains cut the journey to seven hours.</p>"
    "<p>Passengers on the Astana Almaty high-speed railway praised the new carriages and the speed.</p>"
)
RAIL_BODY_2 = (
    "<p>Tickets for the Astana Almaty high-speed railway sold out within hours, Kazakhstan Temir Zholy said. "
    "The railway company will add more trains between Astana and Almaty next month.</p>"
)
FLOOD_BODY = "<p>Spring floods in Petropavlovsk forced the evacuation of villages along the Ishim river.</p>"


async def api_by_uri(pipeline, uri: str):
    status, body = await pipeline.get_json(f"/api/v1/articles?uri={uri}")
    return body if status == 200 else None


async def test_article_is_readable_with_related_articles(pipeline, producer, run_id):
    topic = pipeline.kafka.topic_upstream
    uris = [f"urn:test:{run_id}:rail-1", f"urn:test:{run_id}:rail-2", f"urn:test:{run_id}:flood"]
    await publish(producer, topic, ninjs(uris[0], headline="Astana–Almaty high-speed railway opens", body=RAIL_BODY,
                                         created="2026-11-27T08:00:00+05:00", tags=("Railways",)))
    await publish(producer, topic, ninjs(uris[2], headline="Floods in Petropavlovsk", body=FLOOD_BODY, section="Society",
                                         created="2026-11-27T08:30:00+05:00"))
    await publish(producer, topic, ninjs(uris[1], headline="Astana–Almaty railway tickets sold out", body=RAIL_BODY_2,
                                         created="2026-11-27T09:00:00+05:00", tags=("Railways",)))

    article = await eventually(lambda: api_by_uri(pipeline, uris[1]), what="the article via the API")
    assert article["id"] == article_id_for(uris[1])
    assert article["headline"] == "Astana–Almaty railway tickets sold out"
    assert article["url"] == f"{pipeline.base_url}/articles/{article['id']}/astana-almaty-railway-tickets-sold-out"
    assert article["section"] == {"slug": "business", "name": "Business"}
    assert article["published_at"] == "2026-11-27T04:00:00+00:00"

    async def related_of(uri: str, expected: str):
        body = await api_by_uri(pipeline, uri)
        return body if body and any(r["id"] == article_id_for(expected) for r in body["related"]) else None

    linked = await eventually(lambda: related_of(uris[1], uris[0]), what="the related list")
    ids = [r["id"] for r in linked["related"]]
    assert article["id"] not in ids, "an article is never related to itself"
    assert ids[0] == article_id_for(uris[0]), "the same story ranks first"
    # Back-linking: the older rail story now lists the newer one too.
    await eventually(lambda: related_of(uris[0], uris[1]), what="the back-link")

    status, html, headers = await pipeline.get(f"/articles/{article['id']}/{article['url'].rsplit('/', 1)[1]}")
    assert status == 200
    for needle in ("KazPost", "Kazakhstan News", "Astana–Almaty railway tickets sold out", "Standfirst.",
                   "Related Articles", "Astana–Almaty high-speed railway opens", "Newsletter", 'lang="en"'):
        assert needle in html, needle
    assert "Content-Security-Policy" in headers and headers["X-Content-Type-Options"] == "nosniff"
    assert "ETag" in headers
    status304, _, _ = await pipeline.get(f"/articles/{article['id']}/{article['url'].rsplit('/', 1)[1]}",
                                         headers={"If-None-Match": headers["ETag"]})
    assert status304 == 304
    for encoding in ("br", "gzip"):
        status, compressed_html, headers = await pipeline.get(
            f"/articles/{article['id']}/{article['url'].rsplit('/', 1)[1]}", headers={"Accept-Encoding": encoding})
        assert status == 200 and headers["Content-Encoding"] == encoding and compressed_html == html

    # A wrong slug answers 301 to the canonical URL.
    status, _, headers = await pipeline.get(f"/articles/{article['id']}/old-slug", allow_redirects=False)
    assert status == 301 and headers["Location"].endswith("/astana-almaty-railway-tickets-sold-out")

    async def on_home():
        status, html, _ = await pipeline.get("/")
        return status == 200 and "Astana–Almaty railway tickets sold out" in html
    await eventually(on_home, what="the article on the home page")
    status, html, _ = await pipeline.get("/section/business")
    assert status == 200 and "Astana–Almaty railway tickets sold out" in html


async def test_malformed_message_is_dead_lettered_and_next_valid_arrives(pipeline, producer, run_id, kafka_settings):
    topic = pipeline.kafka.topic_upstream
    good = f"urn:test:{run_id}:after-bad"
    await publish(producer, topic, b'{"uri": "urn:broken", "type": "text", "version": NaN}', key=b"urn:broken")
    await publish(producer, topic, ninjs(f"urn:test:{run_id}:no-headline", headlines=[]))
    await publish(producer, topic, ninjs(good, headline="Valid after invalid"))
    assert await eventually(lambda: api_by_uri(pipeline, good), what="the valid article")

    consumer = AIOKafkaConsumer(kafka_settings.topic_upstream_dlq, bootstrap_servers=kafka_settings.bootstrap_servers,
                                group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        reasons = {}
        async def dead_letters():
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    reasons[r.key] = (r.value, dict(r.headers))
            return len(reasons) >= 2 and reasons
        await eventually(dead_letters, what="two dead letters")
    finally:
        await consumer.stop()
    value, headers = reasons[b"urn:broken"]
    assert value == b'{"uri": "urn:broken", "type": "text", "version": NaN}', "the original bytes are kept"
    assert b"NaN is not allowed" in headers["dlq.reason"] and headers["dlq.source_topic"] == topic.encode()
    _, headers = reasons[f"urn:test:{run_id}:no-headline".encode()]
    assert b"headlines" in headers["dlq.reason"]


async def test_version_2_replaces_1_and_stale_versions_change_nothing(pipeline, producer, run_id):
    topic = pipeline.kafka.topic_upstream
    uri = f"urn:test:{run_id}:versions"
    await publish(producer, topic, ninjs(uri, version=1, headline="First headline"))
    await eventually(lambda: api_by_uri(pipeline, uri), what="version 1")
    await publish(producer, topic, ninjs(uri, version=2, headline="Corrected headline",
                                         version_created="2026-11-27T10:00:00+05:00"))

    async def at_version(v: int):
        body = await api_by_uri(pipeline, uri)
        return body if body and body["version"] == v else None
    body = await eventually(lambda: at_version(2), what="version 2")
    assert body["headline"] == "Corrected headline"
    # A late, older version and a duplicate of v2 change nothing.
    await publish(producer, topic, ninjs(uri, version=1, headline="Stale headline"))
    await publish(producer, topic, ninjs(uri, version=2, headline="Corrected headline",
                                         version_created="2026-11-27T10:00:00+05:00"))
    marker = f"urn:test:{run_id}:versions-marker"
    await publish(producer, topic, ninjs(marker, headline="Marker"))
    await eventually(lambda: api_by_uri(pipeline, marker), what="a later article (ordering marker)")
    body = await api_by_uri(pipeline, uri)
    assert body["version"] == 2 and body["headline"] == "Corrected headline"
    status, html, _ = await pipeline.get(f"/articles/{body['id']}/corrected-headline")
    assert status == 200 and "Updated" in html and "This article has been updated" in html
    _, listing = await pipeline.get_json("/api/v1/articles?limit=100")
    assert [i["id"] for i in listing["items"]].count(body["id"]) == 1, "listed once, never duplicated"
    assert next(i for i in listing["items"] if i["id"] == body["id"])["headline"] == "Corrected headline"


async def test_kill_answers_410_and_leaves_every_list(pipeline, producer, run_id):
    topic = pipeline.kafka.topic_upstream
    keep, kill = f"urn:test:{run_id}:kill-keep", f"urn:test:{run_id}:kill-target"
    body = "<p>Almaty metro extension opens three new stations on the Almaty metro line this week.</p>"
    section = f"Metro {run_id}"  # a section of this test's own: its listing is not paginated away
    await publish(producer, topic, ninjs(keep, headline="Almaty metro extension opens", body=body, section=section))
    await publish(producer, topic, ninjs(kill, headline="Almaty metro opens new stations", body=body, section=section))
    kill_id, keep_id = article_id_for(kill), article_id_for(keep)

    async def keep_lists_kill():
        b = await api_by_uri(pipeline, keep)
        return b and any(r["id"] == kill_id for r in b["related"])
    await eventually(keep_lists_kill, what="related link before the kill")

    await publish(producer, topic, ninjs(kill, version=2, status="canceled"))

    async def gone():
        status, _ = await pipeline.get_json(f"/api/v1/articles/{kill_id}")
        return status == 410
    await eventually(gone, what="410 after the kill")
    status, html, _ = await pipeline.get(f"/articles/{kill_id}/almaty-metro-opens-new-stations")
    assert status == 410 and "withdrawn" in html

    async def unlinked():
        b = await api_by_uri(pipeline, keep)
        return b and not any(r["id"] == kill_id for r in b["related"])
    await eventually(unlinked, what="the killed article to leave related lists")

    async def off_listings():
        _, home, _ = await pipeline.get("/")
        _, front, _ = await pipeline.get(f"/section/metro-{run_id}")
        _, listing = await pipeline.get_json(f"/api/v1/articles?section=metro-{run_id}")
        ids = [i["id"] for i in listing["items"]]
        return (f"/articles/{kill_id}/" not in home and f"/articles/{kill_id}/" not in front
                and f"/articles/{keep_id}/" in front and ids == [keep_id])
    # Pages are dropped from the cache by the events, asynchronously: within moments, not at once.
    await eventually(off_listings, timeout=10, what="the killed article to leave the home page and its section")


async def test_database_stall_delays_but_loses_and_duplicates_nothing(pipeline, producer, run_id):
    """FerretDB is frozen (SIGSTOP) for a few seconds mid-stream, then continued."""
    stack = REPO / "deploy" / "local" / "stack.sh"
    if not os.environ.get("KAZPOST_STATE"):
        pytest.fail("KAZPOST_STATE is not set: run the suite with `make test` so the test can pause the database")
    topic = pipeline.kafka.topic_upstream
    uris = [f"urn:test:{run_id}:stall-{i}" for i in range(30)]
    for uri in uris[:10]:
        await publish(producer, topic, ninjs(uri, headline=f"Stall test {uri[-2:]}"))
    subprocess.run(["bash", str(stack), "pause-db"], check=True, capture_output=True)
    try:
        for uri in uris[10:20]:
            await publish(producer, topic, ninjs(uri, headline=f"Stall test {uri[-2:]}"))
        await asyncio.sleep(6)  # longer than the database call timeout
    finally:
        subprocess.run(["bash", str(stack), "resume-db"], check=True, capture_output=True)
    for uri in uris[20:]:
        await publish(producer, topic, ninjs(uri, headline=f"Stall test {uri[-2:]}"))

    async def all_readable():
        results = await asyncio.gather(*(api_by_uri(pipeline, u) for u in uris))
        return all(results) and results
    results = await eventually(all_readable, timeout=120, interval=1, what="all 30 articles after the stall")
    assert {r["version"] for r in results} == {1}
    # Nothing duplicated: every article is on the home listing exactly once.
    _, listing = await pipeline.get_json("/api/v1/articles?limit=100")
    ids = [i["id"] for i in listing["items"]]
    assert len(ids) == len(set(ids))
    assert {article_id_for(u) for u in uris} <= set(ids)
    assert all(not t.done() for t in pipeline.tasks.values()), "no consumer died"


async def test_embargoed_article_is_invisible_everywhere_until_its_time(pipeline, producer, run_id):
    from datetime import UTC, datetime, timedelta

    topic = pipeline.kafka.topic_upstream
    open_uri, embargoed_uri = f"urn:test:{run_id}:emb-open", f"urn:test:{run_id}:emb-held"
    body = "<p>The Baikonur cosmodrome will launch the Kazakh satellite KazSat-4 from Baikonur next spring.</p>"
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    await publish(producer, topic, ninjs(embargoed_uri, headline="KazSat-4 launch date set at Baikonur", body=body,
                                         embargoedUntil=later))
    await publish(producer, topic, ninjs(open_uri, headline="Baikonur prepares KazSat-4 satellite launch", body=body))
    held_id = article_id_for(embargoed_uri)

    async def open_linked():
        b = await api_by_uri(pipeline, open_uri)
        return b if b else None
    await eventually(open_linked, what="the open article")
    # Give linking time to process both, then check nothing leaks the embargoed one.
    marker = f"urn:test:{run_id}:emb-marker"
    await publish(producer, topic, ninjs(marker, headline="Marker", body="<p>Unrelated marker text.</p>"))
    await eventually(lambda: api_by_uri(pipeline, marker), what="a later article")
    await asyncio.sleep(1)
    assert (await pipeline.get_json(f"/api/v1/articles/{held_id}"))[0] == 404
    assert (await pipeline.get(f"/articles/{held_id}/kazsat-4-launch-date-set-at-baikonur"))[0] == 404
    assert all(r["id"] != held_id for r in (await api_by_uri(pipeline, open_uri))["related"])
    _, home, _ = await pipeline.get("/")
    assert f"/articles/{held_id}/" not in home
    _, feed, _ = await pipeline.get("/feed.xml")
    assert held_id not in feed
    _, result = await pipeline.get_json("/api/v1/search?q=KazSat")
    assert all(i["id"] != held_id for i in result["items"])

    # The embargo is lifted by a new version: it appears everywhere.
    await publish(producer, topic, ninjs(embargoed_uri, version=2, headline="KazSat-4 launch date set at Baikonur",
                                         body=body, version_created="2026-11-27T10:00:00+05:00"))
    assert await eventually(lambda: api_by_uri(pipeline, embargoed_uri), what="the article after the embargo")

    async def linked_now():
        b = await api_by_uri(pipeline, open_uri)
        return b and any(r["id"] == held_id for r in b["related"])
    await eventually(linked_now, what="the related link after the embargo")


async def test_republished_story_is_collapsed_and_shown_as_also_reported_by(pipeline, producer, run_id):
    topic = pipeline.kafka.topic_upstream
    body = ("<p>The National Bank of Kazakhstan kept its base rate at 16.5 percent on Friday, citing "
            "inflation that slowed to 8.3 percent in October and a stable tenge.</p>"
            "<p>Governor Timur Suleimenov said the bank would consider cutting the base rate in the first quarter "
            "if inflation keeps slowing, and warned that fiscal spending remains a risk.</p>")
    first, copy = f"urn:test:{run_id}:rate-a", f"urn:test:{run_id}:rate-b"
    await publish(producer, topic, ninjs(first, headline="National Bank keeps base rate at 16.5%", body=body,
                                         infoSources=[{"name": "Kazinform"}]))
    await publish(producer, topic, ninjs(copy, headline="Base rate unchanged at 16.5 percent", body=body,
                                         infoSources=[{"name": "Tengrinews"}]))
    copy_id = article_id_for(copy)

    async def shown():
        body_ = await api_by_uri(pipeline, first)
        if not body_:
            return None
        status, html, _ = await pipeline.get(f"/articles/{body_['id']}/national-bank-keeps-base-rate-at-16-5")
        return html if status == 200 and "Also reported by" in html else None
    html = await eventually(shown, what="the also-reported-by block")
    assert "Tengrinews: Base rate unchanged at 16.5 percent" in html
    assert all(r["id"] != copy_id for r in (await api_by_uri(pipeline, first))["related"]), "duplicates are not related articles"


async def test_services_starting_together_create_collections_without_tripping_over_each_other(mongo, run_id):
    from shared.mongo import COLLECTIONS, init_database

    db = mongo[f"kazpost_race{run_id}"]
    try:
        await asyncio.gather(*(init_database(db) for _ in range(4)))
        assert set(COLLECTIONS) <= set(await db.list_collection_names())
    finally:
        await mongo.drop_database(db.name)


async def test_translations_are_linked_with_hreflang_while_visible(pipeline, producer, run_id):
    topic = pipeline.kafka.topic_upstream
    en, ru = f"urn:test:{run_id}:tr-en", f"urn:test:{run_id}:tr-ru"
    en_id, ru_id = article_id_for(en), article_id_for(ru)

    def translation(uri: str, language: str) -> dict:
        return {f"translation-{language}": {"type": "text", "uri": uri, "language": language}}

    await publish(producer, topic, ninjs(en, headline="Steppe wind farm opens", language="en", associations=translation(ru, "ru")))
    await publish(producer, topic, ninjs(ru, headline="В степи открылась ветровая электростанция", language="ru",
                                         associations=translation(en, "en")))

    async def linked():
        status, html, _ = await pipeline.get(f"/articles/{en_id}")
        return html if status == 200 and 'hreflang="ru"' in html else None
    html = await eventually(linked, what="the hreflang link to the Russian translation")
    base = pipeline.base_url
    assert f'<link rel="alternate" hreflang="en" href="{base}/articles/{en_id}/steppe-wind-farm-opens">' in html
    assert f'<link rel="alternate" hreflang="ru" href="{base}/articles/{ru_id}/' in html
    assert 'lang="ru">русский</a>' in html
    status, ru_html, _ = await pipeline.get(f"/articles/{ru_id}")
    assert status == 200 and 'hreflang="en"' in ru_html

    # A killed translation is no longer offered.
    await publish(producer, topic, ninjs(ru, version=2, status="canceled"))

    async def unlinked():
        status, html, _ = await pipeline.get(f"/articles/{en_id}")
        return status == 200 and 'hreflang="ru"' not in html
    await eventually(unlinked, what="the killed translation to disappear")


async def test_article_gets_a_player_with_real_narration(pipeline, producer, run_id):
    uri = f"urn:test:{run_id}:narrated"
    article_id = article_id_for(uri)
    body = "<p>The Caspian shore road reopened on Monday after repairs.</p><p>Drivers can use all four lanes again.</p>"
    await publish(producer, pipeline.kafka.topic_upstream, ninjs(uri, headline="Caspian shore road reopens", body=body))

    async def player():
        status, html, _ = await pipeline.get(f"/articles/{article_id}")
        return html if status == 200 and "<audio" in html else None
    # Narration takes the articles of every other test first (one real synthesis each): on a
    # loaded 2-core machine that queue can take more than a minute.
    html = await eventually(player, timeout=180, what="the narration player")
    url = re.search(r'<source src="(/audio/[0-9a-f]+/1\.opus)" type="audio/ogg; codecs=opus">', html).group(1)
    async with pipeline.http.get(pipeline.base_url + url, headers={"Range": "bytes=0-3"}) as r:
        assert r.status == 206 and await r.read() == b"OggS"  # an Ogg stream starts with its capture pattern
        total = int(r.headers["Content-Range"].rsplit("/", 1)[1])
    async with pipeline.http.get(pipeline.base_url + url) as r:
        data = await r.read()
        assert r.status == 200 and len(data) == total > 1000


async def test_an_article_near_the_2_mb_limit_goes_through(pipeline, producer, run_id):
    """The contract allows messages of up to 2 MB (a body of up to 1,000,000 characters): beyond
    the broker's 1 MB default, so the topics are created to accept them and every hop carries them."""
    uri = f"urn:test:{run_id}:long-read"
    paragraph = "<p>" + " ".join(f"Сөз{n % 997} дала өзен" for n in range(60)) + ".</p>"
    body = paragraph * (950_000 // len(paragraph))
    value = json.dumps(ninjs(uri, headline="Өте ұзақ мақала", body=body, language="kk"), ensure_ascii=False).encode()
    assert 1_500_000 < len(value) < 2_000_000
    await publish(producer, pipeline.kafka.topic_upstream, value, key=uri.encode())

    async def stored():
        status, doc = await pipeline.get_json(f"/api/v1/articles/{article_id_for(uri)}")
        return doc if status == 200 else None
    doc = await eventually(stored, timeout=60, what="the long article to be readable")
    assert doc["word_count"] > 100_000

"""Fixtures for the real-browser tests: the whole pipeline (as in tests/integration), a
headless Chromium driven by Playwright, and a small set of articles published through Kafka.

Chromium is Debian's (``/usr/bin/chromium``, or ``KAZPOST_CHROMIUM``); axe-core comes from
npm (``deploy/local/browser-deps.sh`` installs both and prints the path that
``KAZPOST_AXE_JS`` must name).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from shared.events import article_id_for
from tests.conftest import RUN_ID
from tests.integration.conftest import *  # noqa: F403  (re-exports the pipeline fixtures)
from tests.integration.helpers import eventually, ninjs, publish

CHROMIUM = os.environ.get("KAZPOST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required",
]
NAV_TIMEOUT_MS = 20_000


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives a real headless Chromium against the running site")


@pytest.fixture(scope="session")
def run_id() -> str:
    """The browser tests' own topics, consumer groups and database.

    The fixtures above are the integration ones, re-exported; when both directories run in one
    session pytest sets them up once per directory, and two pipelines sharing consumer groups
    would split the partitions (and the linking service's in-memory index) between them.
    """
    return f"{RUN_ID}b"


@pytest.fixture(scope="session")
def browser_artifacts(artifacts_dir: pathlib.Path) -> pathlib.Path:
    path = artifacts_dir / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def axe_source() -> str:
    path = os.environ.get("KAZPOST_AXE_JS")
    if not path:
        pytest.fail("KAZPOST_AXE_JS is not set: run `bash deploy/local/browser-deps.sh` and export "
                    "KAZPOST_AXE_JS=<the axe.min.js path it prints> (make test does this)")
    source = pathlib.Path(path)
    if not source.is_file():
        pytest.fail(f"KAZPOST_AXE_JS={path} is not a file: run `bash deploy/local/browser-deps.sh`")
    return source.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.fail("the Python package playwright is not installed: pip install -e '.[test]'")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"no Chromium at {CHROMIUM}: run `bash deploy/local/browser-deps.sh`")
    async with async_playwright() as pw:
        # Playwright gives every launch a fresh temporary profile (user-data-dir) of its own.
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
                                           chromium_sandbox=False)
        yield browser
        await browser.close()


@pytest.fixture
async def new_context(browser):
    """``await new_context(**options)``: a fresh browser context, closed after the test."""
    contexts = []

    async def make(**options):
        context = await browser.new_context(**options)
        context.set_default_timeout(NAV_TIMEOUT_MS)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        await context.close()


# --- the articles ------------------------------------------------------------------------------

SPACE_BODY_1 = (
    "<p>A Soyuz rocket carrying three crew members lifted off from the Baikonur cosmodrome on Friday. "
    "Roscosmos said the Baikonur launch of the Soyuz crew went to plan and the crew reached orbit.</p>"
    "<p>The crew will spend six months aboard the International Space Station. Baikonur, leased by "
    "Russia from Kazakhstan, remains the only launch site for Soyuz crew flights.</p>"
)
SPACE_BODY_2 = (
    "<p>The Soyuz crew launched from the Baikonur cosmodrome docked with the International Space Station "
    "six hours after lift-off, Roscosmos said. The three crew members are in good health.</p>"
    "<p>The Baikonur launch was the second Soyuz crew flight from Kazakhstan this year.</p>"
)
KK_BODY = (
    "<p>Астанада Есіл өзенінің жағасында жаңа саябақ ашылды. Саябақта балаларға арналған алаңдар, "
    "велосипед жолдары және он мыңнан астам ағаш бар.</p>"
    "<p>Қала әкімдігінің айтуынша, саябақ күн сайын таңғы алтыдан түнгі он екіге дейін ашық болады.</p>"
)
RU_BODY = (
    "<p>В Алматы открылась новая станция метро «Сайран». Поезда будут ходить с шести утра до полуночи, "
    "сообщил акимат города.</p>"
    "<p>Строительство станции продолжалось четыре года. Это десятая станция алматинского метро.</p>"
)


@dataclass
class Article:
    uri: str
    headline: str
    standfirst: str
    language: str
    section: str
    tags: tuple[str, ...] = ()
    id: str = ""
    path: str = ""


@dataclass
class Site:
    base_url: str
    launch: Article       # the older story of the pair
    docking: Article      # the newer one: first on the home page, related to `launch`
    kazakh: Article
    russian: Article
    search_word: str = "Baikonur"
    section_name: str = "Science"
    section_slug: str = "science"

    def url(self, path: str) -> str:
        return self.base_url + path


async def api_by_uri(pipeline, uri: str) -> dict | None:
    status, body = await pipeline.get_json(f"/api/v1/articles?uri={uri}")
    return body if status == 200 else None


async def publish_and_wait(pipeline, producer, articles: list[tuple[Article, str]], *, when: datetime) -> None:
    """Publish each (article, body) upstream, then wait until the API serves every one."""
    for n, (article, body) in enumerate(articles):
        created = (when + timedelta(minutes=n)).isoformat()
        await publish(producer, pipeline.kafka.topic_upstream, ninjs(
            article.uri, headline=article.headline, standfirst=article.standfirst, body=body,
            language=article.language, section=article.section, created=created, tags=article.tags,
        ))
    for article, _ in articles:
        doc = await eventually(lambda a=article: api_by_uri(pipeline, a.uri), what=f"{a_name(article)} via the API")
        assert doc["id"] == article_id_for(article.uri)
        article.id = doc["id"]
        article.path = doc["url"].removeprefix(pipeline.base_url)


def a_name(article: Article) -> str:
    return f"the article {article.uri!r}"


@pytest.fixture(scope="session")
async def site(pipeline, producer, run_id) -> Site:
    """Four articles, published upstream and visible everywhere the tests look."""
    site = Site(
        base_url=pipeline.base_url,
        launch=Article(f"urn:test:{run_id}:soyuz-launch", "Soyuz crew lifts off from Baikonur",
                       "Three crew members are on their way to the space station.", "en", "Science", ("Space",)),
        docking=Article(f"urn:test:{run_id}:soyuz-docking", "Baikonur Soyuz crew docks with the space station",
                        "The crew launched from Kazakhstan reached the station six hours after lift-off.", "en", "Science", ("Space",)),
        kazakh=Article(f"urn:test:{run_id}:kk-park", "Астанада жаңа саябақ ашылды",
                       "Есіл өзенінің жағасындағы саябақта он мыңнан астам ағаш бар.", "kk", "Society"),
        russian=Article(f"urn:test:{run_id}:ru-metro", "В Алматы открылась новая станция метро",
                        "Станция «Сайран» стала десятой в алматинском метро.", "ru", "Society"),
    )
    now = datetime.now(UTC).replace(microsecond=0)
    await publish_and_wait(pipeline, producer, [
        (site.kazakh, KK_BODY), (site.russian, RU_BODY), (site.launch, SPACE_BODY_1), (site.docking, SPACE_BODY_2),
    ], when=now - timedelta(minutes=30))

    async def related(of: Article, to: Article):
        doc = await api_by_uri(pipeline, of.uri)
        return doc and any(r["id"] == to.id for r in doc["related"])
    await eventually(lambda: related(site.docking, site.launch), what="the related link docking → launch")
    await eventually(lambda: related(site.launch, site.docking), what="the related link launch → docking")

    async def page_lists(path: str, *articles: Article):
        status, html, _ = await pipeline.get(path)
        return status == 200 and all(f"/articles/{a.id}/" in html for a in articles)
    await eventually(lambda: page_lists("/", site.docking, site.launch, site.kazakh, site.russian), what="the home page")
    await eventually(lambda: page_lists(f"/section/{site.section_slug}", site.docking, site.launch), what="the section page")
    await eventually(lambda: page_lists(f"/search?q={site.search_word}", site.docking, site.launch), what="search results")
    for article in (site.launch, site.docking):
        await eventually(lambda a=article: page_lists(a.path, site.launch if a is site.docking else site.docking),
                         what=f"the related link on the page of {a_name(article)}")
    return site

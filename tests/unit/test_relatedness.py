"""Unit tests for the related-articles index (services.linking.relatedness)."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import pytest

from services.linking.relatedness import Analyzer, Doc, Match, RelatedIndex, tokenize

DAY = 86400.0
T0 = 1_700_000_000.0
BBC = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "news" / "bbc" / "articles.csv"


def doc(id_, title, text, *, lang="en", day=0.0, section=None):
    return Doc(id_, lang, title, text, T0 + day * DAY, section)


FLOODS_1 = doc(
    "floods-1",
    "Floods hit Almaty after days of heavy rain",
    "Heavy rain caused severe floods in Almaty on Monday. Rescue teams evacuated hundreds of "
    "residents from flooded districts near the Esentai river, the emergencies ministry said. "
    "Several roads were closed and the city's metro suspended two stations.",
    day=0,
)
FLOODS_2 = doc(
    "floods-2",
    "Almaty floods: residents evacuated as river bursts its banks",
    "The Esentai river burst its banks in Almaty after heavy rain, flooding districts and forcing "
    "rescue teams to evacuate residents. The emergencies ministry warned of more rain and floods.",
    day=1,
)
FOOTBALL = doc(
    "football-1",
    "Kairat beat Astana in the league derby",
    "Kairat won the football derby against Astana 2-1 on Sunday. The striker scored twice in the "
    "second half as the league leaders extended their unbeaten run to nine matches.",
    day=1,
)
OIL = doc(
    "oil-1",
    "Oil output at Tengiz rises",
    "Oil production at the Tengiz field rose by four percent in the third quarter, the operator "
    "said, as exports through the pipeline to the Black Sea increased.",
    day=2,
)


def build(*docs, **kw) -> RelatedIndex:
    ix = RelatedIndex(**kw)
    for d in docs:
        ix.upsert(d)
    return ix


def ids(matches: list[Match]) -> list[str]:
    return [m.id for m in matches]


# ----------------------------------------------------------------------------- related lists
def test_related_never_contains_itself_and_finds_the_same_story():
    ix = build(FLOODS_1, FLOODS_2, FOOTBALL, OIL)
    for d in (FLOODS_1, FLOODS_2, FOOTBALL, OIL):
        assert d.id not in ids(ix.related(d.id))
    rel = ix.related("floods-1")
    assert rel and rel[0].id == "floods-2"
    assert 0.0 < rel[0].score <= 1.0
    assert "football-1" not in ids(rel)
    assert len(ix) == 4 and "oil-1" in ix and "nope" not in ix


def test_related_respects_k_and_unknown_ids():
    docs = [doc(f"f{i}", f"Floods in Almaty update {i}",
                f"Heavy rain and floods in Almaty, update number {i}: rescue teams evacuate residents "
                f"from district {i} as the Esentai river rises. Item {i * 37} of the flood coverage.",
                day=i) for i in range(8)]
    ix = build(*docs)
    assert len(ix.related("f0", k=3)) == 3
    assert len(ix.related("f0")) <= 6
    assert ix.related("missing") == []


def test_remove_vanishes_and_returns_affected_ids():
    ix = build(FLOODS_1, FLOODS_2, FOOTBALL, OIL)
    assert "floods-2" in ids(ix.related("floods-1"))
    affected = ix.remove("floods-2")
    assert "floods-1" in affected
    assert "floods-2" not in ix
    for d in (FLOODS_1, FOOTBALL, OIL):
        assert "floods-2" not in ids(ix.related(d.id))
    assert ix.remove("floods-2") == []  # no-op when absent
    assert ix.related("floods-2") == []
    # the freed slot is reused safely
    ix.upsert(doc("football-2", "Astana hold Kairat", FOOTBALL.text, day=3))
    assert ix.duplicates("football-2") == ["football-1"]
    assert "football-1" not in ids(ix.related("football-2"))
    assert "floods-2" not in ix.duplicates("football-2")


def test_duplicates_are_detected_and_collapsed():
    copy = doc("floods-1-copy", FLOODS_1.title, FLOODS_1.text, day=0.5)
    near = doc("floods-1-near", FLOODS_1.title, FLOODS_1.text + " Updated at 10:00.", day=0.6)
    ix = build(FLOODS_1, copy, near, FLOODS_2, FOOTBALL)
    assert set(ix.duplicates("floods-1")) == {"floods-1-copy", "floods-1-near"}
    assert "floods-1" in ix.duplicates("floods-1-copy")
    assert ix.duplicates("floods-2") == []
    # a third doc sees only one member of the duplicate cluster
    rel = ids(ix.related("floods-2"))
    assert len({"floods-1", "floods-1-copy", "floods-1-near"} & set(rel)) == 1
    # a doc never lists its own duplicates
    assert not {"floods-1-copy", "floods-1-near"} & set(ids(ix.related("floods-1")))
    # removing one member leaves the others clustered
    ix.remove("floods-1-near")
    assert ix.duplicates("floods-1") == ["floods-1-copy"]


def test_same_language_first_and_cross_language_only_when_clear():
    en_story = doc("en-floods", "Floods hit Almaty", FLOODS_1.text, day=0.2)
    ru_story = doc(
        "ru-floods", "Наводнение в Алматы",
        "Сильные дожди вызвали наводнение в Алматы в понедельник. Спасатели эвакуировали сотни "
        "жителей из затопленных районов у реки Есентай, сообщило министерство по чрезвычайным ситуациям.",
        lang="ru", day=0.1,
    )
    ru_other = doc(
        "ru-football", "Кайрат обыграл Астану",
        "Кайрат выиграл дерби у Астаны со счётом 2:1 в воскресенье, нападающий забил дважды.",
        lang="ru", day=0.1,
    )
    ix = build(FLOODS_1, ru_story, ru_other, en_story, FLOODS_2)
    rel = ix.related("floods-1")
    assert rel and not rel[0].cross_language
    langs = [m.cross_language for m in rel]
    assert langs == sorted(langs)  # same-language matches come before any cross-language one
    assert "ru-football" not in ids(rel)
    # the Russian football story is not linked to the English flood stories
    assert "floods-2" not in ids(ix.related("ru-football"))


def test_prefers_fresh_among_equally_related():
    base = ("Heavy rain caused floods in Almaty. Rescue teams evacuated residents from districts near "
            "the Esentai river, the emergencies ministry said.")
    q = doc("q", "Almaty floods", base, day=100)
    old = doc("old", "Almaty floods", base.replace("Heavy", "Strong"), day=0)
    fresh = doc("fresh", "Almaty floods", base.replace("Heavy", "Torrential"), day=99)
    ix = build(old, fresh, q, dup_threshold=1.01)  # disable duplicate collapse for this test
    rel = ix.related("q")
    assert ids(rel)[:2] == ["fresh", "old"]
    assert rel[0].score > rel[1].score


def test_upsert_backlinks_older_docs_and_content_change():
    ix = build(FLOODS_1, FOOTBALL, OIL)
    assert "floods-1" not in [m.id for m in ix.related("football-1")]
    back = ix.upsert(FLOODS_2)
    assert "floods-1" in back
    assert "football-1" not in back
    assert "floods-2" in ids(ix.related("floods-1"))
    # same content again: nothing changes
    assert ix.upsert(FLOODS_2) == []
    # content changes: docs that listed it are reported
    changed = doc("floods-2", "Tengiz oil output rises", OIL.text + " Exports grew.", day=1)
    assert "floods-1" in ix.upsert(changed)
    assert "floods-2" not in ids(ix.related("floods-1"))


def test_backlink_limit_bounds_the_result():
    docs = [doc(f"f{i}", "Almaty floods", FLOODS_1.text + f" Report {i} from district {i * 13}.", day=i)
            for i in range(6)]
    ix = build(*docs, dup_threshold=1.01, backlink_limit=2)
    assert len(ix.upsert(doc("new", "Almaty floods latest", FLOODS_2.text, day=7))) <= 2


def test_dump_load_round_trip():
    ix = build(FLOODS_1, FLOODS_2, FOOTBALL, OIL, doc("floods-1-copy", FLOODS_1.title, FLOODS_1.text))
    ix.remove("oil-1")
    data = ix.dump()
    assert isinstance(data, bytes)
    ix2 = RelatedIndex.load(data)
    assert len(ix2) == len(ix)
    for d in ("floods-1", "floods-2", "football-1", "floods-1-copy"):
        assert ix2.related(d) == ix.related(d)
        assert sorted(ix2.duplicates(d)) == sorted(ix.duplicates(d))
    assert ix2.search("floods") == ix.search("floods")
    # the loaded index keeps working incrementally
    assert "floods-1" in ix2.upsert(doc("floods-3", "More floods in Almaty", FLOODS_2.text + " Day three."))
    with pytest.raises(ValueError):
        RelatedIndex.load(b"garbage")


# ----------------------------------------------------------------------------- search
def test_search_title_match_first_and_language_filter():
    body_only = doc("body", "City council meeting",
                    "The council discussed budgets. Tengiz was mentioned once in passing.", day=3)
    ru = doc("ru-tengiz", "Добыча нефти на Тенгизе выросла",
             "Добыча нефти на месторождении Тенгиз выросла на четыре процента.", lang="ru", day=2)
    ix = build(OIL, body_only, FLOODS_1, ru)
    total, page = ix.search("Tengiz")
    assert total == 2
    assert page[0].id == "oil-1"
    assert ids(page) == ["oil-1", "body"]
    total, page = ix.search("Tengiz", language="ru")
    assert total == 0 and page == []
    total, page = ix.search("тенгиз нефть", language="ru")
    assert ids(page) == ["ru-tengiz"]
    total, page = ix.search("floods almaty")
    assert ids(page) == ["floods-1"]
    total, page = ix.search("Tengiz", limit=1, offset=1)
    assert total == 2 and ids(page) == ["body"]
    assert ix.search("the of and") == (0, [])
    assert ix.highlight_terms("Floods in Almaty") == ["flood", "almati"]


def test_search_finds_a_word_beyond_the_strongest_terms_ranked_after_the_strong_matches():
    # 40 words said three times and "saiga" once: saiga is in the article's vector (80 terms) but
    # not among the 32 strongest terms that the inverted lists hold
    words = [f"alpha{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(40)]
    weak = doc("weak", "Steppe report", " ".join(w for w in words for _ in range(3)) + " saiga.", day=1)
    strong = doc("strong", "Saiga antelope numbers recover", "Saiga herds grew again. The saiga census counted more.", day=0)
    ix = build(weak, strong, FLOODS_1)
    assert "weak" not in {ix._idt.id_of(int(v) >> 8) for v in ix._post.gather([_key("saiga")])[0]}  # noqa: SLF001
    total, page = ix.search("saiga")
    assert total == 2 and ids(page) == ["strong", "weak"]
    assert 0 < page[1].score < page[0].score
    assert ix.search("saiga", limit=1) == (1, [page[0]])  # a full page from the lists: no scan
    total, page = ix.search("saiga", limit=1, offset=1)
    assert total == 2 and ids(page) == ["weak"]
    ix.remove("weak")
    assert ids(ix.search("saiga")[1]) == ["strong"]


def _key(word: str) -> int:
    from services.linking.relatedness import _h32
    return _h32(Analyzer().stem(word, "en"))


def test_search_kazakh():
    kk = doc("kk-1", "Алматыда су тасқыны болды",
             "Алматыда нөсер жаңбыр салдарынан су тасқыны болды. Құтқарушылар тұрғындарды көшірді.",
             lang="kk")
    ix = build(kk, FLOODS_1)
    total, page = ix.search("тасқынның", language="kk")  # inflected form finds the stem
    assert total == 1 and page[0].id == "kk-1"


# ----------------------------------------------------------------------------- analysis
def test_tokenize_cyrillic_latin_digits():
    assert tokenize("Қазақстан Республикасы: ӘҒҚҢӨҰҮҺІ 2024 жыл, COVID-19!") == [
        "қазақстан", "республикасы", "әғқңөұүһі", "2024", "жыл", "covid", "19"]
    assert tokenize("Президент Токаев провёл встречу") == ["президент", "токаев", "провёл", "встречу"]


def test_analyzer_stems_and_stop_words():
    an = Analyzer()
    ru = an.terms("Президенты встретились в Москве и обсудили новые соглашения", "ru")
    assert "в" not in ru and "и" not in ru
    assert an.terms("президента", "ru") == an.terms("президент", "ru")
    kk = an.terms("Қазақстанның қалалары және ауылдары", "kk")
    assert "және" not in kk
    assert an.terms("қалалардың", "kk") == an.terms("қала", "kk") == ["қала"]
    assert an.terms("Қазақстанның", "kk") == an.terms("Қазақстан", "kk")
    en = an.terms("The governments are governing", "en")
    assert en == ["govern", "govern"]


def test_entity_keys_cross_script():
    an = Analyzer()
    en = set(an.entities("Talks were held in Almaty with President Tokayev."))
    ru = set(an.entities("Переговоры прошли в Алматы с президентом Токаевым."))
    kk = set(an.entities("Келіссөздер Алматыда Президент Тоқаевпен өтті."))
    assert "@almat" in en & ru & kk
    assert "@tokae" in en & ru & kk


def test_similarity_is_symmetric_and_bounded():
    ix = build(FLOODS_1, FLOODS_2, FOOTBALL, OIL)
    s12 = ix.similarity(FLOODS_1, FLOODS_2)
    assert s12 == pytest.approx(ix.similarity(FLOODS_2, FLOODS_1))
    assert 0.0 <= ix.similarity(FLOODS_1, FOOTBALL) < s12 <= 1.0
    assert ix.similarity(FLOODS_1, FLOODS_1) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- real data
@pytest.mark.skipif(not BBC.exists(), reason="shared BBC corpus not available")
def test_bbc_exact_duplicates_detected():
    csv.field_size_limit(1 << 30)
    with open(BBC, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    ix = RelatedIndex()
    groups = defaultdict(list)
    for n, r in enumerate(rows):
        ix.upsert(Doc(r["doc_id"], "en", r["title"], r["text"], T0 + n * 600))
        if r["is_exact_duplicate_of_other"].strip() == "1":
            groups[r["text_md5_12"]].append(r["doc_id"])
    pairs = [(g[0], o) for g in groups.values() for o in g[1:]]
    assert len(pairs) == 100
    missing = [(a, b) for a, b in pairs if b not in ix.duplicates(a) or a not in ix.duplicates(b)]
    assert missing == []
    for a, b in pairs[:20]:
        assert not {a, b} & set(m.id for m in ix.related(a)) - {a}  # never its own copy


def test_listed_by_names_the_lists_that_hold_a_doc():
    from services.linking.relatedness import Doc, RelatedIndex

    ix = RelatedIndex(k=3)
    text = "Astana Almaty railway high speed trains Temir Zholy passengers tickets"
    ix.upsert(Doc("a", "en", "Railway opens", text, 1000.0))
    ix.upsert(Doc("b", "en", "Railway tickets", text + " sold out quickly", 2000.0))
    assert ix.listed_by("a") == ["b"] or "b" in ix.listed_by("a")
    assert ix.listed_by("missing") == []


def test_compacting_and_dumping_in_small_steps_keeps_every_vector(monkeypatch):
    from services.linking import relatedness

    monkeypatch.setattr(relatedness, "_CHUNK", 3)
    words = [f"term{i}" for i in range(120)]
    ix = RelatedIndex(k=4)
    for n in range(40):
        ix.upsert(doc(f"d{n}", f"title {n % 7}", " ".join(words[(n * 5 + j) % 120] for j in range(15)), day=n / 10))
    for n in range(0, 40, 3):  # new text: the old vector becomes garbage in the middle of the store
        ix.upsert(doc(f"d{n}", f"title {n % 7}", " ".join(words[(n * 11 + j) % 120] for j in range(18)), day=n / 10))
    for n in (5, 17, 29):
        ix.remove(f"d{n}")
    vectors = {d: tuple(map(tuple, ix._doc_vector(s))) for d, s in ((d, ix._idt.get(d)) for d in ix._idt)}  # noqa: SLF001
    before = {d: ix.related(d) for d in vectors}
    assert ix._vgarbage > 0  # noqa: SLF001
    ix.trim()
    assert ix._vgarbage == 0 and ix._vused == sum(len(v[0]) for v in vectors.values())  # noqa: SLF001
    assert {d: tuple(map(tuple, ix._doc_vector(s))) for d, s in ((d, ix._idt.get(d)) for d in ix._idt)} == vectors  # noqa: SLF001
    assert {d: ix.related(d) for d in vectors} == before
    restored = RelatedIndex.load(ix.dump())
    assert {d: restored.related(d) for d in vectors} == before

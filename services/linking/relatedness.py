"""Related-articles engine: an in-memory, incremental index over news articles.

Method (lexical, multilingual, dependency-light):

* Analysis: Unicode word tokens (Cyrillic incl. Kazakh letters, Latin, digits), lower-cased,
  stop words removed (built-in en/ru/kk lists plus small lists for a few other languages),
  stemmed (Snowball for en/ru and the other Snowball languages, a light suffix stripper for kk).
  Title terms count extra.  Capitalised words that are not sentence-initial and numbers are also
  turned into language-neutral "entity keys" (transliterated to Latin, prefix-truncated) which
  are what cross-language matching relies on.
* Weighting: raw term frequency x BM25-form IDF ``ln(1 + (N - df + .5) / (df + .5))`` (IDF from
  the indexed corpus, updated as it grows; stored vectors keep term frequencies so that scores
  always use the current IDF), L2-normalised, pruned to each doc's top terms (noise reduction and
  compact storage).  Entity keys take part with a reduced weight.
* Relatedness: cosine of the pruned vectors, mapped by a square root onto a roughly linear
  0..1 scale.  Pairs in different languages can only match through what they share (names,
  numbers, entity keys); in related lists they are down-weighted, must clear a high bar
  ("clearly the same story") and come after the same-language matches.
* Near-duplicates: 64 one-byte MinHash values over word 4-shingles per doc; candidates come
  from the relatedness retrieval itself (an exact copy always ranks first) and are verified by the
  estimated Jaccard similarity.  Duplicates are kept in clusters; related lists show at most one
  member per cluster and never the doc's own cluster.
* Retrieval: inverted lists hold each doc's 32 strongest terms as uint32 postings (slot << 8 |
  quantised weight) in compressed-row numpy arrays (``postings.py``); traversal is capped to the
  most recent postings of very common terms, candidate scores are accumulated with numpy and
  the best candidates are re-scored exactly against their whole (80-term) vectors.
"""

from __future__ import annotations

import io
import json
import math
import re
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from services.linking.idmap import IdTable
from services.linking.postings import Postings

try:  # Snowball stemmers: PyStemmer (C) when installed, else the pure-Python snowballstemmer
    import Stemmer as _snowball  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the environment
    try:
        import snowballstemmer as _snowball  # type: ignore[no-redef]
    except ImportError:  # pragma: no cover
        _snowball = None

__all__ = ["Doc", "Match", "RelatedIndex", "Analyzer", "tokenize"]


@dataclass(frozen=True, slots=True)
class Doc:
    id: str
    language: str  # BCP-47 primary subtag, e.g. "en", "ru", "kk"
    title: str
    text: str  # plain text (standfirst + body), already stripped of HTML
    published_at: float  # epoch seconds
    section: str | None = None


@dataclass(frozen=True, slots=True)
class Match:
    id: str
    score: float  # higher = more related, roughly 0..1
    cross_language: bool = False


# --------------------------------------------------------------------------------------------
# Language resources
# --------------------------------------------------------------------------------------------

_STOP_EN = set(
    """a about above after again against all almost also although always am among an and another any
    anyone anything are around as at away back be became because become been before being below
    between both but by can cannot could did do does doing done down during each either else even
    ever every few for from further get gets got had has have having he her here hers herself him
    himself his how however i if in into is it its itself just least less like made make many may
    me might more most much must my myself neither never no nor not now of off often on once one
    only or other others our ours ourselves out over own per perhaps put quite rather really said
    same say says see seen several shall she should since so some still such than that the their
    theirs them themselves then there these they this those though through thus to too under
    until up upon us very was we well were what whatever when where whether which while who whom
    whose why will with within without would yet you your yours yourself yourselves mr mrs ms
    s t d ll m re ve don didn doesn isn wasn aren weren won wouldn couldn shouldn hasn haven hadn
    new year years told two three last first week also according""".split()
)

_STOP_RU = set(
    """а без более бы был была были было быть в вам вас весь во вот все всего всех вы где да даже
    для до его ее её ей ему если есть еще ещё же за здесь и из или им их к как какая какой
    когда кто ли либо между меня мне много может можно мой мы на над надо наш не него нее неё
    нет ни них но ну о об однако он она они оно от очень по под после при про раз с сам свой
    себе себя со так также такой там тем то того тоже той только том тот тут ты у уже хотя
    чего чей чем что чтобы чье эта эти это этого этой этом этот эту я который которая которое
    которые которых котором которой которую которым году года лет также будет будут было
    сейчас всё пока более менее ли ведь вот вон через сказал заявил отметил сообщил""".split()
)

_STOP_KK = set(
    """мен сен ол біз сіз олар бұл осы сол және бен пен да де та те ма ме ба бе па пе ғой қой
    ал бірақ егер үшін туралы бойынша арқылы кейін дейін соң бар жоқ емес еді болды болып
    болса болған болады деп деді деген екен өз өзі әр барлық бір тағы енді қазір сондай
    осындай қандай не кім қай қашан неге қалай мұнда сонда онда оның оны оған одан бұның
    мұның мұны бұған осының соның тек ғана әлі ең өте сияқты секілді жөнінде қарай шейін
    тиіс керек мүмкін жылы жыл ретінде сайын бірге немесе яғни себебі сонымен қатар тиісті
    болатын айтты атап""".split()
)

# Small lists for other languages the evaluation set contains; IDF handles the rest.
_STOP_OTHER = {
    "de": set(
        """der die das den dem des ein eine einer eines einem einen und oder aber auch als am an auf
        aus bei bis durch für gegen hat haben hatte im in ist mit nach nicht noch nur über um
        unter vom von vor war waren wird werden wie wir zu zum zur sich sie er es ich ihr sein
        seine so dass daß sind kann man mehr schon wenn was wo""".split()
    ),
    "es": set(
        """el la los las un una unos unas y o pero de del al a en con por para sin sobre entre
        que se su sus lo le les es son fue ha han como más mas este esta estos estas ese esa
        eso muy ya también tambien no si sí hay""".split()
    ),
    "fr": set(
        """le la les un une des et ou mais de du au aux à en dans par pour sur avec sans que qui
        se sa son ses il elle ils elles est sont été a ont ce cette ces plus ne pas""".split()
    ),
    "pl": set(
        """i w z na do się nie że to jest o od po za przez dla jak co ale lub a by oraz tym tego
        jej jego ich są był była było ten ta te""".split()
    ),
    "tr": set(
        """ve bir bu da de ile için olarak daha çok gibi en ise ama o şu ki mi ne her""".split()
    ),
}

_STOP = {"en": _STOP_EN, "ru": _STOP_RU, "kk": _STOP_KK | _STOP_RU, **_STOP_OTHER}

_SNOWBALL_NAMES = {
    "en": "english", "ru": "russian", "de": "german", "es": "spanish", "fr": "french",
    "it": "italian", "pt": "portuguese", "nl": "dutch", "tr": "turkish", "pl": "polish",
    "ar": "arabic", "sv": "swedish", "da": "danish", "no": "norwegian", "nb": "norwegian",
    "fi": "finnish", "hu": "hungarian", "ro": "romanian", "cs": "czech", "el": "greek",
    "uk": "russian", "be": "russian", "sr": "serbian", "lt": "lithuanian", "et": "estonian",
    "ca": "catalan", "eu": "basque", "ga": "irish", "hy": "armenian", "id": "indonesian",
    "ne": "nepali", "hi": "hindi", "fa": "persian", "ta": "tamil", "yi": "yiddish",
}

# Kazakh light stemmer: inflectional suffixes (longest first), then a 5-letter prefix cut, which
# is robust for agglutinative languages.  Endings that also end many roots (-ы/-і, -ны/-ды/-ты,
# -сы/-сі) are only removed word-finally and only from long words.
_KK_SUFFIXES = sorted(
    """лар лер дар дер тар тер ның нің дың дің тың тің ға ге қа ке нда нде да де та те нан
    нен дан ден тан тен мен бен пен ым ім ың ің мыз міз ңыз ңіз ымыз іміз сың ған ген
    қан кен атын етін йтын йтін ып іп уда уде ушы уші""".split(),
    key=len,
    reverse=True,
)
_KK_FINAL = ("ны", "ні", "ды", "ді", "ты", "ті", "сы", "сі", "ы", "і")
_KK_PREFIX = 5

_TRANSLIT = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh", "з": "z",
    "и": "i", "й": "i", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r",
    "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh",
    "щ": "sh", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "iu", "я": "ia",
    "ә": "a", "ғ": "g", "қ": "k", "ң": "n", "ө": "o", "ұ": "u", "ү": "u", "һ": "h", "і": "i",
    "є": "e", "ї": "i", "ґ": "g",
    "ä": "a", "ö": "o", "ü": "u", "ß": "ss", "é": "e", "è": "e", "ê": "e", "á": "a", "à": "a",
    "â": "a", "í": "i", "ó": "o", "ú": "u", "ñ": "n", "ç": "c", "ş": "s", "ğ": "g", "ı": "i",
    "ł": "l", "ś": "s", "ź": "z", "ż": "z", "ć": "c", "ń": "n", "ą": "a", "ę": "e", "ô": "o",
}
_TRANSLIT_TABLE = str.maketrans(_TRANSLIT)
_ENTITY_NORMALISE = (("ph", "f"), ("ck", "k"), ("ch", "c"), ("c", "k"), ("q", "k"), ("kh", "k"),
                     ("x", "ks"), ("w", "v"), ("zh", "j"), ("j", "i"), ("y", "i"))
_GLIDE_RE = re.compile(r"(?<=[aeiou])y(?=[aeiou])|^y(?=e)")

_WORD_RE = re.compile(r"[^\W_]+")
_SENT_END = frozenset('.!?…:;"«»“”\n')
# (sentence-ending punctuation right before the word, word)
_TOKP_RE = re.compile(r'([.!?…:;"«»“”\n]?)[ \t\r]*([^\W_]+)')


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens (letters of any script and digits)."""
    return _WORD_RE.findall(text.lower())


def _kk_stem(word: str) -> str:
    for suf in _KK_FINAL:
        if word.endswith(suf) and len(word) - len(suf) >= 5:
            word = word[: -len(suf)]
            break
    for _ in range(3):
        for suf in _KK_SUFFIXES:
            if word.endswith(suf) and len(word) - len(suf) >= 3:
                word = word[: -len(suf)]
                break
        else:
            break
    return word[:_KK_PREFIX]


def entity_key(token: str) -> str | None:
    """Language-neutral key for a name or number: transliterated, normalised, prefix-cut."""
    if token.isdigit():
        return "#" + token if len(token) >= 2 else None
    s = _GLIDE_RE.sub("", token.lower().translate(_TRANSLIT_TABLE))
    for a, b in _ENTITY_NORMALISE:
        s = s.replace(a, b)
    s = re.sub(r"(.)\1+", r"\1", s)
    if len(s) < 3 or not s.isascii():
        return None
    return "@" + s[:5]


class Analyzer:
    """Language-aware analysis with per-language stem caches."""

    def __init__(self, cache_size: int = 20_000) -> None:
        self._stemmers: dict[str, object | None] = {}
        self._caches: dict[str, dict[str, str]] = {}
        self._cache_size = cache_size
        self._ekeys: dict[str, str | None] = {}

    def _stemmer(self, lang: str):
        if lang not in self._stemmers:
            name = _SNOWBALL_NAMES.get(lang)
            st = None
            if name and _snowball is not None:
                try:
                    st = (_snowball.Stemmer(name) if hasattr(_snowball, "Stemmer")
                          else _snowball.stemmer(name))
                except (KeyError, ValueError):
                    st = None
            self._stemmers[lang] = st
        return self._stemmers[lang]

    def stem(self, word: str, lang: str) -> str:
        """Stem of one lower-cased word in the given language (cached)."""
        cache = self._caches.get(lang)
        if cache is None or len(cache) >= self._cache_size:
            cache = self._caches[lang] = {}
        s = cache.get(word)
        if s is None or (s == "" and word):
            s = cache[word] = self._stem_uncached(word, lang)
        return s

    def _stem_uncached(self, word: str, lang: str) -> str:
        if word.isdigit():
            return word
        if lang == "kk":
            return _kk_stem(word)
        st = self._stemmer(lang)
        if st is None and lang not in _SNOWBALL_NAMES and any("а" <= c <= "я" for c in word):
            st = self._stemmer("ru")
        return st.stemWord(word) if st is not None else word

    def terms(self, text: str, lang: str) -> list[str]:
        """Stemmed content terms of a text (stop words and 1-char tokens removed)."""
        return self.analyze(text, lang, entities=False)[0]

    def entities(self, text: str) -> list[str]:
        """Entity keys: capitalised non-sentence-initial words, acronyms and numbers."""
        return self.analyze(text, "", entities=True)[1]

    def analyze(self, text: str, lang: str, entities: bool = True) -> tuple[list[str], list[str]]:
        """One pass over the text: (stemmed content terms, entity keys)."""
        lang = (lang or "").lower().split("-")[0]
        cache = self._caches.get(lang)
        if cache is None or len(cache) >= self._cache_size:
            cache = self._caches[lang] = {}
        stop = _STOP.get(lang, _STOP_EN)
        pairs = _TOKP_RE.findall(text)
        terms: list[str] = []
        add = terms.append
        for _, tok in pairs:
            low = tok.lower()
            st = cache.get(low)
            if st is None:
                st = "" if len(low) < 2 or low in stop else self._stem_uncached(low, lang)
                cache[low] = st
            if st:
                add(st)
        ents: list[str] = []
        if entities:
            ekeys = self._ekeys
            if len(ekeys) > self._cache_size:
                ekeys.clear()
            first = True
            for punct, tok in pairs:
                c = tok[0]
                if c.isupper():
                    if (punct or first) and not (len(tok) > 1 and tok.isupper()):
                        first = False
                        continue
                    k = ekeys.get(tok, "")
                    if k == "":
                        k = ekeys[tok] = entity_key(tok)
                    if k is not None:
                        ents.append(k)
                elif c.isdigit() and len(tok) >= 2 and tok.isdigit():
                    ents.append("#" + tok)
                first = False
        return terms, ents


# --------------------------------------------------------------------------------------------
# Index
# --------------------------------------------------------------------------------------------

_DEFAULTS: dict[str, float | int] = {
    "max_terms": 80,          # terms kept per doc vector (pruned by tf-idf weight)
    "title_boost": 1,         # extra tf given to each title occurrence
    "entity_weight": 0.5,     # weight factor of entity keys (names/numbers) in a vector
    "tf_power": 1.0,          # term-frequency exponent (1 = raw tf, <1 = sublinear)
    "candidates": 96,         # candidates re-scored exactly per lookup
    "max_postings": 4000,     # most recent postings traversed per term
    "query_terms": 40,        # heaviest query terms used for candidate generation
    "min_score": 0.2,         # related() threshold (score scale, i.e. sqrt of cosine)
    "xl_threshold": 0.62,     # cross-language: raw score needed ("clearly the same story")
    "xl_factor": 0.9,         # cross-language score multiplier
    "max_cross": 2,           # at most this many cross-language matches in a related list
    "decay_days": 30.0,       # time decay: (1 + |dt|/decay_days) ** -decay_power
    "decay_power": 0.5,
    "dup_threshold": 0.7,     # estimated Jaccard of word 4-shingles for near-duplicates
    "dup_gate": 0.7,          # minimum score before the MinHash check is made
    "df_bits": 21,            # size of the hashed document-frequency table (2**df_bits)
    "posting_terms": 32,      # a doc's strongest terms in the inverted lists (candidates, search)
}

_NPERM = 64
# Per-slot arrays (grown and trimmed together) and what an unused slot holds.
_SLOT_ARRAYS = {"_pub": 0, "_lang": 0, "_off": 0, "_len": 0, "_chk": 0, "_clu": -1, "_sig": 0, "_top": -1, "_tops": 0}
_CHUNK = 4096  # slots per step when vectors are moved or gathered in bulk (bounds the index arrays)
_SHINGLE = 4
_rng = np.random.default_rng(0x4B5A5053)
_PERM_A = (_rng.integers(1, 2**63 - 1, _NPERM, dtype=np.uint64) * np.uint64(2) + np.uint64(1))
_PERM_B = _rng.integers(0, 2**63 - 1, _NPERM, dtype=np.uint64)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_ENTITY_BIT = 0x80
_TF_MAX = 0x7F
_MAGIC = b"KZRI3"  # 3: ids in an id table; 2: postings of the 32 strongest terms only


def _h32(term: str) -> int:
    return zlib.crc32(term.encode("utf-8"))


def minhash_signature(text: str) -> np.ndarray:
    """64 one-byte MinHash values over word 4-shingles (lower-cased raw tokens)."""
    toks = tokenize(text)
    if not toks:
        return np.zeros(_NPERM, dtype=np.uint8)
    # Hashed afresh every time: a cache of token hashes saved 8 µs per article and grew to
    # tens of MB on a large corpus.
    h = np.fromiter((zlib.crc32(t.encode("utf-8")) or 1 for t in toks), dtype=np.uint64, count=len(toks))
    if len(h) >= _SHINGLE:
        sh = h[: len(h) - _SHINGLE + 1].copy()
        for j in range(1, _SHINGLE):
            sh = sh * _MIX + h[j: len(h) - _SHINGLE + 1 + j]
    else:
        sh = h * _MIX
    sh = np.unique(sh)
    with np.errstate(over="ignore"):
        v = (sh[:, None] * _PERM_A[None, :] + _PERM_B[None, :]) >> np.uint64(40)
    return (v.min(axis=0) & np.uint64(0xFF)).astype(np.uint8)


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray | float:
    """Jaccard estimate from one-byte MinHash signatures (corrected for 1/256 chance hits)."""
    m = np.mean(sig_a == sig_b, axis=-1)
    return np.clip((m - 1 / 256) / (1 - 1 / 256), 0.0, 1.0)


class RelatedIndex:
    """In-memory incremental related-articles index (see module docstring for the method)."""

    def __init__(self, k: int = 6, *, backlink_limit: int = 20, **tuning) -> None:
        unknown = set(tuning) - set(_DEFAULTS)
        if unknown:
            raise TypeError(f"unknown tuning parameters: {sorted(unknown)}")
        self.k = int(k)
        self.backlink_limit = int(backlink_limit)
        self.params = {**_DEFAULTS, **tuning}
        p = self.params
        self._T = int(p["max_terms"])
        self._tfp = float(p["tf_power"])
        self._df_mask = (1 << int(p["df_bits"])) - 1
        self._df = np.zeros(1 << int(p["df_bits"]), dtype=np.uint32)
        self._ndf = 0  # documents counted in the DF table
        self._an = Analyzer()
        self._langs: list[str] = []
        self._lang_code: dict[str, int] = {}
        # slot-indexed state
        self._idt = IdTable()  # article id <-> slot
        self._cap = 0
        self._pub = np.zeros(0, np.float64)
        self._lang = np.zeros(0, np.uint8)
        self._off = np.zeros(0, np.int64)
        self._len = np.zeros(0, np.int32)
        self._chk = np.zeros(0, np.uint32)  # content checksum (title+text+language)
        self._clu = np.zeros(0, np.int32)   # near-duplicate cluster id, -1 = none
        self._sig = np.zeros((0, _NPERM), np.uint8)
        self._top = np.zeros((0, self.k), np.int32)
        self._tops = np.zeros((0, self.k), np.float32)
        self._clusters: dict[int, list[int]] = {}
        self._next_cluster = 0
        # flat vector store: term key (uint32) and tf (uint8: 7-bit tf, high bit = entity key)
        self._vk = np.zeros(1024, np.uint32)
        self._vt = np.zeros(1024, np.uint8)
        self._vused = 0
        self._vgarbage = 0
        # postings: term key -> (slot << 8 | title bit << 7 | weight 1..127), see postings.py
        self._post = Postings()
        self._gen = 0  # bumped on every mutation; guards the last-query cache
        self._last: tuple[int, int, np.ndarray, np.ndarray] | None = None

    # ---------------------------------------------------------------- basics
    def __len__(self) -> int:
        return len(self._idt)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._idt

    @property
    def _n(self) -> int:
        """Slots in use, freed ones included: every slot is below this."""
        return self._idt.rows

    def _slot_of(self, doc_id: str) -> int | None:
        slot = self._idt.get(doc_id)
        return slot if slot >= 0 else None

    def _ids_of(self, slots: Iterable[int]) -> list[str]:
        """The ids of these slots (freed slots left out)."""
        return [d for s in slots if (d := self._idt.id_of(s)) is not None]

    def _grow(self, need: int) -> None:
        if need <= self._cap:
            return
        cap = max(1024, self._cap * 5 // 4, need)  # slack stays under a quarter
        for name, fill in _SLOT_ARRAYS.items():
            a = getattr(self, name)
            b = np.full((cap,) + a.shape[1:], fill, a.dtype)
            b[: len(a)] = a
            setattr(self, name, b)
        self._cap = cap

    def _lang_id(self, lang: str) -> int:
        lang = (lang or "und").lower().split("-")[0]
        c = self._lang_code.get(lang)
        if c is None:
            if len(self._langs) >= 255:
                return self._lang_code.setdefault("und", 0)
            c = self._lang_code[lang] = len(self._langs)
            self._langs.append(lang)
        return c

    def _idf(self, keys: np.ndarray) -> np.ndarray:
        n = max(self._ndf, 1)
        df = self._df[keys & self._df_mask].astype(np.float64)
        return np.log1p((n - df + 0.5) / (df + 0.5))

    # ---------------------------------------------------------------- analysis
    def _features(self, doc: Doc) -> tuple[Counter, set[int]]:
        lang = (doc.language or "").lower().split("-")[0]
        feats: Counter = Counter()
        title_terms, title_ents = self._an.analyze(doc.title, lang) if doc.title else ([], [])
        feats.update(title_terms)
        if title_terms and self.params["title_boost"]:
            for t in title_terms:
                feats[t] += int(self.params["title_boost"])
        body_terms, body_ents = self._an.analyze(doc.text, lang)
        feats.update(body_terms)
        feats.update(title_ents)
        feats.update(body_ents)
        title_keys = {_h32(t) for t in title_terms}
        return feats, title_keys

    def _vectorise(self, feats: Counter) -> tuple[np.ndarray, np.ndarray]:
        """Feature counts -> (keys uint32, tf uint16 with entity bit), not yet pruned."""
        n = len(feats)
        keys = np.empty(n, np.uint32)
        tfs = np.empty(n, np.uint8)
        for i, (t, c) in enumerate(feats.items()):
            keys[i] = _h32(t)
            tfs[i] = min(c, _TF_MAX) | (_ENTITY_BIT if t[0] in "@#" else 0)
        # hash collisions inside one doc: merge
        if len(np.unique(keys)) != n:
            u, inv = np.unique(keys, return_inverse=True)
            t2 = np.zeros(len(u), np.uint32)
            np.add.at(t2, inv, (tfs & _TF_MAX).astype(np.uint32))
            ent = np.zeros(len(u), np.uint8)
            np.maximum.at(ent, inv, tfs & _ENTITY_BIT)
            keys, tfs = u, (np.minimum(t2, _TF_MAX).astype(np.uint8) | ent)
        return keys, tfs

    def _weights(self, keys: np.ndarray, tfs: np.ndarray) -> np.ndarray:
        tf = (tfs & _TF_MAX).astype(np.float64)
        if self._tfp != 1.0:
            tf = tf ** self._tfp
        w = tf * self._idf(keys)
        ent = (tfs & _ENTITY_BIT) != 0
        if ent.any():
            w[ent] *= float(self.params["entity_weight"])
        return w

    def _prune(self, keys, tfs, w):
        if len(keys) > self._T:
            sel = np.argpartition(-w, self._T - 1)[: self._T]
            keys, tfs, w = keys[sel], tfs[sel], w[sel]
        o = np.argsort(keys)
        return keys[o], tfs[o], w[o]

    def _doc_vector(self, slot: int) -> tuple[np.ndarray, np.ndarray]:
        o, n = int(self._off[slot]), int(self._len[slot])
        return self._vk[o: o + n], self._vt[o: o + n]

    # ---------------------------------------------------------------- public: similarity
    def similarity(self, a: Doc, b: Doc) -> float:
        """Content similarity of two docs (IDF from the indexed corpus), roughly 0..1."""
        va = self._prune(*self._pre(a))
        vb = self._prune(*self._pre(b))
        s = self._cos_sparse(va[0], va[2], vb[0], vb[2])
        score = math.sqrt(max(s, 0.0))
        if self._norm_lang(a.language) != self._norm_lang(b.language):
            score *= float(self.params["xl_factor"])
        return score

    @staticmethod
    def _norm_lang(lang: str) -> str:
        return (lang or "und").lower().split("-")[0]

    def _pre(self, doc: Doc):
        feats, _ = self._features(doc)
        keys, tfs = self._vectorise(feats)
        return keys, tfs, self._weights(keys, tfs)

    @staticmethod
    def _cos_sparse(ka, wa, kb, wb) -> float:
        na = float(np.sqrt((wa * wa).sum()))
        nb = float(np.sqrt((wb * wb).sum()))
        if not na or not nb:
            return 0.0
        common, ia, ib = np.intersect1d(ka, kb, assume_unique=True, return_indices=True)
        return float((wa[ia] * wb[ib]).sum() / (na * nb)) if len(common) else 0.0

    # ---------------------------------------------------------------- storage helpers
    def _alloc(self, doc_id: str) -> int:
        if len(self._idt) >= (1 << 24):
            raise OverflowError("index is full (16,777,216 slots)")
        slot = self._idt.add(doc_id)
        self._grow(slot + 1)
        return slot

    def _store_vector(self, slot: int, keys: np.ndarray, tfs: np.ndarray) -> None:
        n = len(keys)
        if self._vused + n > len(self._vk):
            if self._vgarbage > self._vused // 2:
                self._compact_vectors()
            if self._vused + n > len(self._vk):
                # Grown by an eighth: the largest array of the index (8 bytes per indexed term),
                # so its slack stays under an eighth of it (copies stay amortised O(1)).
                cap = max(len(self._vk) * 9 // 8, self._vused + n, 1024)
                vk = np.zeros(cap, np.uint32)
                vt = np.zeros(cap, np.uint8)
                vk[: self._vused] = self._vk[: self._vused]
                vt[: self._vused] = self._vt[: self._vused]
                self._vk, self._vt = vk, vt
        o = self._vused
        self._vk[o: o + n] = keys
        self._vt[o: o + n] = tfs
        self._off[slot] = o
        self._len[slot] = n
        self._vused += n

    def trim(self) -> None:
        """Release the slack of the vector store and the per-slot arrays, and fold the inverted
        lists' delta into their base (after a bulk build)."""
        self._compact_vectors()
        self._post.merge()
        if len(self._vk) > self._vused + 1024:
            self._vk = self._vk[: self._vused + 1024].copy()
            self._vt = self._vt[: self._vused + 1024].copy()
        cap = self._n + 256
        if self._cap > cap:
            for name in _SLOT_ARRAYS:
                setattr(self, name, getattr(self, name)[:cap].copy())
            self._cap = cap

    def _compact_vectors(self) -> None:
        """Move the live vectors down over the garbage, in place, _CHUNK slots at a time (in
        the order they are stored, each lands at or before where it was)."""
        live = self._live_by_position()
        if len(live) == 0:
            self._vused = self._vgarbage = 0
            return
        lens = self._len[live].astype(np.int64)
        starts = np.concatenate(([0], np.cumsum(lens)[:-1]))
        for a in range(0, len(live), _CHUNK):
            idx = _ranges(self._off[live[a: a + _CHUNK]], lens[a: a + _CHUNK])
            d = int(starts[a])
            self._vk[d: d + len(idx)] = self._vk[idx]
            self._vt[d: d + len(idx)] = self._vt[idx]
        self._off[live] = starts
        self._vused = int(lens.sum())
        self._vgarbage = 0

    def _live_by_position(self) -> np.ndarray:
        """The live slots, in the order their vectors sit in the vector store."""
        live = self._idt.live_rows()
        return live[np.argsort(self._off[live], kind="stable")]

    def _gather_vectors(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """These slots' vectors, concatenated (gathered _CHUNK slots at a time)."""
        lens = self._len[slots].astype(np.int64)
        vk = np.empty(int(lens.sum()), np.uint32)
        vt = np.empty(len(vk), np.uint8)
        o = 0
        for a in range(0, len(slots), _CHUNK):
            idx = _ranges(self._off[slots[a: a + _CHUNK]], lens[a: a + _CHUNK])
            vk[o: o + len(idx)] = self._vk[idx]
            vt[o: o + len(idx)] = self._vt[idx]
            o += len(idx)
        return vk, vt

    def _post_add(self, slot: int, keys: np.ndarray, w: np.ndarray, title_keys: set[int]) -> None:
        """Postings of a doc's strongest terms (weights relative to its whole vector)."""
        norm = float(np.sqrt((w * w).sum())) or 1.0
        m = int(self.params["posting_terms"])
        if len(keys) > m:
            sel = np.sort(np.argpartition(-w, m - 1)[:m])
            keys, w = keys[sel], w[sel]
        q = np.clip(np.rint(w / norm * 127), 1, 127).astype(np.int64)
        base = slot << 8
        self._post.add(slot, keys.tolist(),
                       [base | qq | (128 if key in title_keys else 0) for key, qq in zip(keys.tolist(), q.tolist())])

    def _post_remove(self, slot: int, keys: np.ndarray) -> None:
        self._post.remove(slot, keys.tolist())

    def _listers(self, slot: int) -> np.ndarray:
        if self._n == 0:
            return np.zeros(0, np.int64)
        rows = np.flatnonzero((self._top[: self._n] == slot).any(axis=1))
        return rows[rows != slot]

    def _detach(self, slot: int) -> None:
        """Drop a slot's postings, vector and cluster membership (slot stays allocated)."""
        keys, _ = self._doc_vector(slot)
        self._post_remove(slot, keys.copy())
        self._vgarbage += int(self._len[slot])
        self._len[slot] = 0
        self._leave_cluster(slot)
        self._top[slot] = -1
        self._tops[slot] = 0.0

    def _leave_cluster(self, slot: int) -> None:
        cid = int(self._clu[slot])
        if cid < 0:
            return
        self._clu[slot] = -1
        members = self._clusters.get(cid)
        if members is None:
            return
        if slot in members:
            members.remove(slot)
        if len(members) <= 1:
            for m in members:
                self._clu[m] = -1
            del self._clusters[cid]

    def _join_clusters(self, slot: int, dups: list[int]) -> None:
        cids = sorted({int(self._clu[d]) for d in dups if self._clu[d] >= 0})
        if cids:
            target = cids[0]
            members = self._clusters[target]
            for c in cids[1:]:
                for m in self._clusters.pop(c):
                    self._clu[m] = target
                    members.append(m)
        else:
            target = self._next_cluster
            self._next_cluster += 1
            members = self._clusters[target] = []
        for m in dups + [slot]:
            if self._clu[m] != target:
                self._clu[m] = target
                members.append(m)

    # ---------------------------------------------------------------- retrieval core
    def _candidates(self, keys: np.ndarray, w: np.ndarray, exclude: int) -> tuple[np.ndarray, np.ndarray]:
        """Top candidates for a query vector: (slots, score = sqrt(cosine)), best first."""
        empty = (np.zeros(0, np.int64), np.zeros(0, np.float64))
        norm = float(np.sqrt((w * w).sum()))
        if not norm or not len(keys):
            return empty
        wn = w / norm
        cap = int(self.params["max_postings"])
        nq = int(self.params["query_terms"])
        if len(keys) > nq:
            top = np.argpartition(-wn, nq - 1)[:nq]
            keys_q, wn_q = keys[top], wn[top]
        else:
            keys_q, wn_q = keys, wn
        p, lens = self._post.gather(keys_q.tolist(), cap)
        if not len(p):
            return empty
        contrib = (p & 127).astype(np.float32) * np.repeat(wn_q.astype(np.float32) / 127.0, lens)
        acc = np.bincount(p >> 8, weights=contrib)
        del p
        if exclude < len(acc):
            acc[exclude] = 0.0
        nz = np.flatnonzero(acc)
        m = int(self.params["candidates"])
        if len(nz) > m:
            nz = nz[np.argpartition(-acc[nz], m - 1)[:m]]
        if not len(nz):
            return empty
        return self._rescore(keys, wn, nz)

    def _rescore(self, qk: np.ndarray, qwn: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lens = self._len[cand].astype(np.int64)
        ok = lens > 0
        cand, lens = cand[ok], lens[ok]
        if not len(cand):
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        idx = _ranges(self._off[cand], lens)
        ck = self._vk[idx]
        cw = self._weights(ck, self._vt[idx])
        starts = np.concatenate(([0], np.cumsum(lens)[:-1]))
        norms = np.sqrt(np.add.reduceat(cw * cw, starts))
        pos = np.searchsorted(qk, ck)
        pos[pos >= len(qk)] = 0
        hit = qk[pos] == ck
        dots = np.add.reduceat(np.where(hit, cw * qwn[pos], 0.0), starts)
        cos = np.where(norms > 0, dots / np.maximum(norms, 1e-12), 0.0)
        score = np.sqrt(np.clip(cos, 0.0, 1.0))
        o = np.argsort(-score, kind="stable")
        return cand[o].astype(np.int64), score[o]

    def _slot_query(self, slot: int) -> tuple[np.ndarray, np.ndarray]:
        last = self._last
        if last is not None and last[0] == slot and last[1] == self._gen:
            return last[2], last[3]
        keys, tfs = self._doc_vector(slot)
        keys = keys.copy()
        return self._candidates(keys, self._weights(keys, tfs), slot)

    def _adjusted(self, slot: int, cand: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Apply time decay and the cross-language rule; returns (adjusted score, is_cross)."""
        p = self.params
        dt = np.abs(self._pub[cand] - self._pub[slot]) / 86400.0
        adj = score * (1.0 + dt / float(p["decay_days"])) ** (-float(p["decay_power"]))
        cross = self._lang[cand] != self._lang[slot]
        if cross.any():
            adj = np.where(cross, np.where(score >= float(p["xl_threshold"]), adj * float(p["xl_factor"]), 0.0), adj)
        return adj, cross

    def _select(self, slot: int, cand: np.ndarray, score: np.ndarray, k: int) -> list[tuple[int, float, bool]]:
        if not len(cand):
            return []
        adj, cross = self._adjusted(slot, cand, score)
        own = int(self._clu[slot])
        clu = self._clu[cand]
        keep = adj >= float(self.params["min_score"])
        if own >= 0:
            keep &= clu != own
        order = np.flatnonzero(keep)
        order = order[np.lexsort((self._pub[cand[order]], -adj[order]))]
        same: list[tuple[int, float, bool]] = []
        xl: list[tuple[int, float, bool]] = []
        seen: set[int] = set()
        max_cross = int(self.params["max_cross"])
        for i in order.tolist():
            c = int(clu[i])
            if c >= 0:
                if c in seen:
                    continue
                seen.add(c)
            if cross[i]:
                if len(xl) < max_cross:
                    xl.append((int(cand[i]), float(adj[i]), True))
            elif len(same) < k:
                same.append((int(cand[i]), float(adj[i]), False))
            if len(same) >= k and len(xl) >= max_cross:
                break
        # same language first; a clearly-same-story translation may displace the weakest ones
        out = same[:k]
        extra = []
        for item in xl:
            if len(out) + len(extra) < k:
                extra.append(item)
            elif out and item[1] > out[-1][1]:
                out.pop()
                extra.append(item)
        return out + extra

    def _remember(self, slot: int, picked: list[tuple[int, float, bool]]) -> None:
        row = np.full(self.k, -1, np.int32)
        sc = np.zeros(self.k, np.float32)
        for j, (c, s, _) in enumerate(picked[: self.k]):
            row[j], sc[j] = c, s
        self._top[slot] = row
        self._tops[slot] = sc

    # ---------------------------------------------------------------- public API
    def upsert(self, doc: Doc) -> list[str]:
        """Add or replace a doc; returns ids of other docs whose related lists may change."""
        lang = self._lang_id(doc.language)
        chk = zlib.crc32(f"{doc.title}\x00{doc.text}".encode("utf-8"))
        self._gen += 1
        self._last = None
        affected: dict[int, float] = {}
        slot = self._slot_of(doc.id)
        if slot is not None:
            if int(self._chk[slot]) == chk and int(self._lang[slot]) == lang:
                self._pub[slot] = float(doc.published_at)
                return []
            for s in self._listers(slot).tolist():
                affected[s] = 10.0  # listed the old version: always re-render first
                row = self._top[s]
                self._tops[s][row == slot] = 0.0
                row[row == slot] = -1
            self._detach(slot)
        else:
            slot = self._alloc(doc.id)
        self._pub[slot] = float(doc.published_at)
        self._lang[slot] = lang
        self._chk[slot] = chk
        feats, title_terms = self._features(doc)
        keys, tfs = self._vectorise(feats)
        np.add.at(self._df, keys & self._df_mask, 1)
        self._ndf += 1
        w = self._weights(keys, tfs)
        keys, tfs, w = self._prune(keys, tfs, w)
        self._store_vector(slot, keys, tfs)
        self._post_add(slot, keys, w, title_terms)
        self._sig[slot] = minhash_signature(doc.title + "\n" + doc.text)
        cand, score = self._candidates(keys, w, slot)
        self._last = (slot, self._gen, cand, score)
        # near-duplicates
        gate = score >= float(self.params["dup_gate"])
        if gate.any():
            gc = cand[gate]
            jac = estimated_jaccard(self._sig[gc], self._sig[slot][None, :])
            dups = gc[jac >= float(self.params["dup_threshold"])].tolist()
            if dups:
                self._join_clusters(slot, dups)
        picked = self._select(slot, cand, score, self.k)
        self._remember(slot, picked)
        # back-links: older docs for which this one now makes their list
        if len(cand):
            own = int(self._clu[slot])
            adj, cross = self._adjusted(slot, cand, score)  # decay is symmetric in |dt|
            for i in np.flatnonzero(adj >= float(self.params["min_score"])).tolist():
                c = int(cand[i])
                if own >= 0 and int(self._clu[c]) == own:
                    continue
                row, sc = self._top[c], self._tops[c]
                j = int(np.argmin(sc))
                a = float(adj[i])
                if a <= float(sc[j]) and row[j] >= 0:
                    continue
                if own >= 0 and (self._clu[row[row >= 0]] == own).any():
                    continue  # a member of this doc's cluster is already listed there
                row[j], sc[j] = slot, a
                affected[c] = max(affected.get(c, 0.0), a)
        affected.pop(slot, None)
        best = sorted(affected.items(), key=lambda kv: -kv[1])[: self.backlink_limit]
        return self._ids_of(s for s, _ in best)

    def remove(self, doc_id: str) -> list[str]:
        """Remove a doc; returns ids of docs whose related lists contained it."""
        slot = self._slot_of(doc_id)
        if slot is None:
            return []
        self._gen += 1
        self._last = None
        listers = self._listers(slot).tolist()
        for s in listers:
            row = self._top[s]
            self._tops[s][row == slot] = 0.0
            row[row == slot] = -1
        self._detach(slot)
        self._idt.discard(doc_id)
        self._chk[slot] = 0
        return self._ids_of(listers)

    def listed_by(self, doc_id: str) -> list[str]:
        """Ids of docs whose current related lists contain this doc."""
        slot = self._slot_of(doc_id)
        if slot is None:
            return []
        return self._ids_of(self._listers(slot).tolist())

    def related(self, doc_id: str, k: int | None = None) -> list[Match]:
        """Up to k best related docs (collapsed, same language first, fresh, diverse)."""
        slot = self._slot_of(doc_id)
        if slot is None:
            return []
        k = self.k if k is None else int(k)
        cand, score = self._slot_query(slot)
        picked = self._select(slot, cand, score, max(k, self.k))
        self._remember(slot, picked)
        return [Match(self._idt.id_of(c), round(s, 6), x) for c, s, x in picked[:k]]  # type: ignore[arg-type]

    def neighbours(self, doc_id: str, limit: int = 50) -> list[Match]:
        """Raw content neighbours (no time decay, collapse or language rules), best first."""
        slot = self._slot_of(doc_id)
        if slot is None:
            return []
        cand, score = self._slot_query(slot)
        lang = self._lang[slot]
        xf = float(self.params["xl_factor"])
        out = [Match(self._idt.id_of(c), float(s) * (xf if self._lang[c] != lang else 1.0), bool(self._lang[c] != lang))
               for c, s in zip(cand.tolist(), score.tolist())]
        out.sort(key=lambda m: -m.score)
        return out[:limit]

    def stats(self) -> dict[str, int]:
        """Sizes for monitoring: docs, indexed terms, postings, clusters and approximate bytes."""
        postings = len(self._post)
        arrays = (self._pub, self._lang, self._off, self._len, self._chk, self._clu, self._sig,
                  self._top, self._tops, self._df, self._vk, self._vt)
        approx = sum(a.nbytes for a in arrays) + self._post.nbytes + self._idt.nbytes
        return {"docs": len(self._idt), "slots": self._n, "terms": self._post.terms(), "postings": postings,
                "vector_entries": self._vused - self._vgarbage, "clusters": len(self._clusters),
                "approx_bytes": int(approx)}

    def duplicates(self, doc_id: str) -> list[str]:
        """Other members of this doc's near-duplicate cluster."""
        slot = self._slot_of(doc_id)
        if slot is None or self._clu[slot] < 0:
            return []
        return self._ids_of(m for m in self._clusters.get(int(self._clu[slot]), []) if m != slot)

    # ---------------------------------------------------------------- full-text search
    _CYR_KK = frozenset("әғқңөұүһі")

    def _query_groups(self, query: str, language: str | None) -> list[list[str]]:
        """One group of alternative stems per query word (script decides the languages)."""
        lang = self._norm_lang(language) if language else None
        groups: list[list[str]] = []
        for tok in tokenize(query):
            if len(tok) < 2 and not tok.isdigit():
                continue
            if lang:
                langs = [lang]
            elif tok.isdigit():
                langs = ["en"]
            elif any("\u0400" <= ch <= "\u04ff" for ch in tok):
                langs = ["kk"] if any(ch in self._CYR_KK for ch in tok) else ["ru", "kk"]
            else:
                langs = ["en"]
            if all(tok in _STOP.get(lg, _STOP_EN) for lg in langs):
                continue
            alts = []
            for lg in langs:
                st = self._an.stem(tok, lg)
                if st and st not in alts:
                    alts.append(st)
            if alts and alts not in groups:
                groups.append(alts)
        return groups

    def highlight_terms(self, query: str) -> list[str]:
        """Normalised (lower-cased, stemmed) query terms, for highlighting by prefix."""
        out: list[str] = []
        for alts in self._query_groups(query, None):
            for a in alts:
                if a not in out:
                    out.append(a)
        return out

    def search(self, query: str, *, language: str | None = None, limit: int = 10,
               offset: int = 0) -> tuple[int, list[Match]]:
        """BM25-style ranked search over the indexed docs' key terms, title boosted.

        The inverted lists hold each doc's strongest terms; when they give fewer hits than the
        page asks for, the vector store (all of each doc's indexed terms) is scanned too, and
        what only it matches ranks by the term's weight in the doc, without the title bonus."""
        groups = self._query_groups(query, language)
        if not groups or not len(self._idt):
            return 0, []
        n = self._n
        k1, xbar, title_bonus = 1.2, 0.12, 1.0
        max_possible = 0.0
        scores: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (g, keys, idf) per query word
        for alts in groups:
            keys = np.array([_h32(a) for a in alts], np.uint32)
            idf = self._idf(keys)
            g = np.zeros(n, np.float64)
            for key, wi in zip(keys.tolist(), idf.tolist()):
                p, _ = self._post.gather((key,))
                if not len(p):
                    continue
                slots = (p >> 8).astype(np.int64)
                x = (p & 127).astype(np.float64) / 127.0
                tb = ((p >> 7) & 1).astype(np.float64)
                del p
                contrib = wi * ((k1 + 1) * x / (x + k1 * xbar) + title_bonus * tb)
                np.maximum.at(g, slots, contrib)
            max_possible += float(idf.max()) * (k1 + 1 + title_bonus)
            scores.append((g, keys, idf))
        need = len(groups) if len(groups) <= 2 else math.ceil(0.75 * len(groups))
        allowed = np.ones(n, bool)
        if language:
            code = self._lang_code.get(self._norm_lang(language))
            if code is None:
                return 0, []
            allowed = self._lang[:n] == code

        def hits_of() -> np.ndarray:
            matched = np.zeros(n, np.int32)
            for g, _, _ in scores:
                matched += g > 0
            return np.flatnonzero((matched >= need) & allowed)

        hits = hits_of()
        if len(hits) < offset + max(0, int(limit)):
            for g, keys, idf in scores:
                slots, pos = self._scan(keys)
                weak = g[slots] == 0
                if weak.any():
                    slots, pos = slots[weak], pos[weak]
                    x = self._weights(self._vk[pos], self._vt[pos]) / self._norms(slots)
                    order = np.argsort(keys)
                    wi = idf[order][np.searchsorted(keys[order], self._vk[pos])]
                    np.maximum.at(g, slots, wi * (k1 + 1) * x / (x + k1 * xbar))
            hits = hits_of()
        total = len(hits)
        if not total or offset >= total:
            return total, []
        total_score = np.zeros(n, np.float64)
        for g, _, _ in scores:
            total_score += g
        order = hits[np.lexsort((-self._pub[hits], -total_score[hits]))]
        page = order[offset: offset + max(0, int(limit))]
        norm = max_possible or 1.0
        return total, [Match(self._idt.id_of(s), float(min(1.0, total_score[s] / norm)))  # type: ignore[arg-type]
                       for s in page.tolist()]

    def _scan(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(slot, vector-store position) of every live vector entry whose key is in ``keys``."""
        vk = self._vk[: self._vused]
        mask = vk == keys[0]
        for key in keys[1:].tolist():
            mask |= vk == key
        pos = np.flatnonzero(mask)
        del mask
        if not len(pos):
            return np.zeros(0, np.int64), pos
        live = self._live_by_position()
        live = live[self._len[live] > 0]
        offs = self._off[live]
        i = np.maximum(np.searchsorted(offs, pos, side="right") - 1, 0)
        slots = live[i]
        ok = (pos >= offs[i]) & (pos < offs[i] + self._len[slots])
        return slots[ok], pos[ok]

    def _norms(self, slots: np.ndarray) -> np.ndarray:
        """L2 norms of these slots' whole weighted vectors (current IDF), _CHUNK slots at a time."""
        out = np.empty(len(slots), np.float64)
        for a in range(0, len(slots), _CHUNK):
            part = slots[a: a + _CHUNK]
            lens = self._len[part].astype(np.int64)
            idx = _ranges(self._off[part], lens)
            w = self._weights(self._vk[idx], self._vt[idx])
            starts = np.concatenate(([0], np.cumsum(lens)[:-1]))
            out[a: a + len(part)] = np.sqrt(np.add.reduceat(w * w, starts))
        return np.maximum(out, 1e-12)

    # ---------------------------------------------------------------- persistence
    def dump(self) -> bytes:
        """Serialise the whole index (numpy .npz container, no pickling)."""
        n = self._n
        live = self._idt.live_rows()
        lens = self._len[live].astype(np.int64) if len(live) else np.zeros(0, np.int64)
        vk, vt = self._gather_vectors(live)
        pkeys, plens, pdata = self._post.arrays()
        ckeys = sorted(self._clusters)
        ikeys, ilive, free, id_text = self._idt.arrays()
        meta = {
            "k": self.k, "backlink_limit": self.backlink_limit, "params": self.params,
            "free": free, "id_text": id_text, "langs": self._langs, "ndf": self._ndf,
            "next_cluster": self._next_cluster, "n": n,
        }
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            meta=np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8),
            df=self._df, pub=self._pub[:n], lang=self._lang[:n], chk=self._chk[:n],
            clu=self._clu[:n], sig=self._sig[:n], top=self._top[:n], tops=self._tops[:n],
            live=live, vlen=lens, vk=vk, vt=vt, ikeys=ikeys, ilive=ilive,
            pkeys=pkeys, plens=plens, pdata=pdata,
            ckeys=np.array(ckeys, np.int64),
            clens=np.array([len(self._clusters[c]) for c in ckeys], np.int64),
            cdata=np.array([m for c in ckeys for m in self._clusters[c]], np.int64),
        )
        return _MAGIC + buf.getvalue()

    @classmethod
    def load(cls, data: bytes) -> "RelatedIndex":
        if not data.startswith(_MAGIC):
            raise ValueError("not a RelatedIndex dump")
        z = np.load(io.BytesIO(data[len(_MAGIC):]), allow_pickle=False)
        meta = json.loads(z["meta"].tobytes().decode("utf-8"))
        self = cls(meta["k"], backlink_limit=meta["backlink_limit"], **meta["params"])
        n = meta["n"]
        self._grow(max(n, 1))
        self._idt = IdTable.from_arrays(z["ikeys"], z["ilive"], meta["free"], meta["id_text"])
        if self._idt.rows != n:
            raise ValueError("RelatedIndex dump: the id table and the slots disagree")
        self._langs = meta["langs"]
        self._lang_code = {l: i for i, l in enumerate(self._langs)}
        self._ndf = meta["ndf"]
        self._next_cluster = meta["next_cluster"]
        self._df = z["df"].copy()
        for name in ("pub", "lang", "chk", "clu", "sig", "top", "tops"):
            getattr(self, "_" + name)[:n] = z[name]
        live, vlen = z["live"], z["vlen"]
        vk, vt = z["vk"], z["vt"]
        self._vk = np.zeros(max(1024, len(vk)), np.uint32)
        self._vt = np.zeros(max(1024, len(vk)), np.uint8)
        self._vk[: len(vk)] = vk
        self._vt[: len(vt)] = vt
        self._vused = len(vk)
        if len(live):
            self._off[live] = np.concatenate(([0], np.cumsum(vlen)[:-1]))
            self._len[live] = vlen
        self._post = Postings.from_arrays(z["pkeys"], z["plens"], z["pdata"], slots=n)
        o = 0
        cdata = z["cdata"].tolist()
        for c, ln in zip(z["ckeys"].tolist(), z["clens"].tolist()):
            self._clusters[c] = cdata[o: o + ln]
            o += ln
        return self


def _ranges(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + n) for each (s, n)."""
    lens = lens.astype(np.int64)
    total = int(lens.sum())
    if not total:
        return np.zeros(0, np.int64)
    ends = np.cumsum(lens)
    rel = np.arange(total, dtype=np.int64) - np.repeat(ends - lens, lens)
    return np.repeat(starts.astype(np.int64), lens) + rel

"""Latency / memory benchmark of the related-articles index on synthetic corpora.

    python -m benchmarks.linking_bench [--sizes 10000,100000] [--quick] [--baseline-queries 200]
                                       [--tracemalloc] [--json OUT]

Synthetic articles are recombined at run time from paragraphs of the BBC corpus (same-category
mixing, ~90% tagged "en", a few tagged "ru"/"kk") and sentences of the SemEval-2022 articles
(their own languages), with ~1% verbatim republications.  Nothing is written to disk.

For each size the index is built incrementally the way the service drives it, one
``upsert`` + ``related`` per article, and the per-article latency is recorded.  The baseline is
a naive TF-IDF brute force (incremental IDF, cosine against every stored vector via one sparse
numpy pass); it is bulk-loaded and only the last ``--baseline-queries`` arrivals are timed,
since timing every arrival would be quadratic.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import random
import re
import time
import tracemalloc
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterator

import numpy as np

from services.linking.relatedness import Doc, RelatedIndex

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = REPO_ROOT.parent / "shared" / "data" / "news"
T0 = 1_704_067_200.0  # 2024-01-01
csv.field_size_limit(1 << 30)


def rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # pragma: no cover - non-Linux
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Source:
    """Paragraph / sentence pools read from the shared corpora."""

    def __init__(self, data: Path) -> None:
        self.bbc: list[tuple[str, str, list[str]]] = []  # (category, title, paragraphs)
        self.by_cat: dict[str, list[int]] = defaultdict(list)
        with open(data / "bbc" / "articles.csv", encoding="utf-8", newline="") as f:
            for r in csv.DictReader(f):
                paras = [p.strip() for p in r["text"].split("\n") if p.strip()]
                self.by_cat[r["category"]].append(len(self.bbc))
                self.bbc.append((r["category"], r["title"], paras))
        self.sem: dict[str, list[list[str]]] = defaultdict(list)  # language -> articles (sentences)
        sem = data / "semeval2022-task8-dev" / "pairs.csv"
        if sem.exists():
            seen = set()
            with open(sem, encoding="utf-8", newline="") as f:
                for r in csv.DictReader(f):
                    for side, lang in (("1", r["lang1"]), ("2", r["lang2"])):
                        aid = r["pair_id"].split("_")[int(side) - 1]
                        if aid in seen:
                            continue
                        seen.add(aid)
                        sents = [s.strip() for s in re.split(r"(?<=[.!?])\s+", r["text" + side]) if s.strip()]
                        if len(sents) >= 2:
                            self.sem[lang].append(sents)

    def docs(self, n: int, seed: int = 7) -> Iterator[Doc]:
        rng = random.Random(seed)
        recent: list[Doc] = []
        langs = list(self.sem)
        for i in range(n):
            ts = T0 + i * 300.0 + rng.uniform(0, 240)
            u = rng.random()
            if recent and u < 0.01:  # verbatim republication of a recent article
                src = rng.choice(recent)
                d = Doc(f"d{i}", src.language, src.title, src.text, ts)
            elif langs and u < 0.11:
                lang = rng.choice(langs)
                a, b = rng.choice(self.sem[lang]), rng.choice(self.sem[lang])
                sents = rng.sample(a, max(1, int(len(a) * rng.uniform(0.5, 1.0)))) + rng.sample(b, min(2, len(b)))
                d = Doc(f"d{i}", lang, sents[0][:120], " ".join(sents[1:]), ts)
            else:
                cat, title, paras = self.bbc[rng.randrange(len(self.bbc))]
                other = self.bbc[rng.choice(self.by_cat[cat])][2]
                body = rng.sample(paras, max(1, int(len(paras) * rng.uniform(0.4, 0.9))))
                body += rng.sample(other, min(len(other), rng.randint(1, 3)))
                rng.shuffle(body)
                lang = "en" if rng.random() < 0.9 else rng.choice(("ru", "kk"))
                d = Doc(f"d{i}", lang, title, "\n".join(body), ts, cat)
            recent.append(d)
            if len(recent) > 200:
                recent.pop(0)
            yield d


class NaiveTfidf:
    """Brute-force TF-IDF cosine over all stored docs (sparse arrays, numpy)."""

    _tok = re.compile(r"\b\w\w+\b")

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self.df = np.zeros(1 << 16, np.int64)
        self.n = 0
        self.doc = np.zeros(1 << 20, np.int32)
        self.term = np.zeros(1 << 20, np.int32)
        self.w = np.zeros(1 << 20, np.float32)
        self.nnz = 0
        self.ids: list[str] = []

    def _vec(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        tf = Counter(self._tok.findall(text.lower()))
        ids = np.array([self.vocab.setdefault(t, len(self.vocab)) for t in tf], np.int64)
        if len(self.vocab) > len(self.df):
            self.df = np.concatenate([self.df, np.zeros(len(self.df), np.int64)])
        return ids, np.array(list(tf.values()), np.float64)

    def upsert(self, d: Doc) -> None:
        ids, tf = self._vec(d.title + "\n" + d.text)
        self.df[ids] += 1
        self.n += 1
        w = tf * (np.log((1 + self.n) / (1 + self.df[ids])) + 1)
        w /= np.linalg.norm(w) or 1.0
        need = self.nnz + len(ids)
        if need > len(self.doc):
            cap = max(need, 2 * len(self.doc))
            for name in ("doc", "term", "w"):
                a = getattr(self, name)
                b = np.zeros(cap, a.dtype)
                b[: self.nnz] = a[: self.nnz]
                setattr(self, name, b)
        sl = slice(self.nnz, need)
        self.doc[sl], self.term[sl], self.w[sl] = len(self.ids), ids, w
        self.nnz = need
        self.ids.append(d.id)
        self._last = (ids, w)

    def related(self, k: int = 6) -> list[str]:
        ids, w = self._last
        q = np.zeros(len(self.vocab), np.float32)
        q[ids] = w
        s = np.bincount(self.doc[: self.nnz], weights=self.w[: self.nnz] * q[self.term[: self.nnz]],
                        minlength=len(self.ids))
        s[-1] = -1.0
        top = np.argpartition(-s, min(k, len(s) - 1))[:k]
        return [self.ids[i] for i in top[np.argsort(-s[top])]]

    def nbytes(self) -> int:
        return self.nnz * 12 + len(self.vocab) * 100


def pct(a, q) -> float:
    return float(np.percentile(np.asarray(a) * 1000, q)) if len(a) else float("nan")


def bench_ours(src: Source, n: int, k: int, trace: bool) -> dict:
    gc.collect()
    if trace:
        tracemalloc.start()
    rss0 = rss_mb()
    ix = RelatedIndex(k=k)
    up, rel, both = [], [], []
    t_start = time.perf_counter()
    gen_time = 0.0
    it = src.docs(n)
    while True:
        g0 = time.perf_counter()
        d = next(it, None)
        g1 = time.perf_counter()
        gen_time += g1 - g0
        if d is None:
            break
        ix.upsert(d)
        t1 = time.perf_counter()
        ix.related(d.id)
        t2 = time.perf_counter()
        up.append(t1 - g1)
        rel.append(t2 - t1)
        both.append(t2 - g1)
    wall = time.perf_counter() - t_start - gen_time
    gc.collect()
    rss1 = rss_mb()
    traced = None
    if trace:
        traced = tracemalloc.get_traced_memory()[0] / 2**20
        tracemalloc.stop()
    # lookups at full size: related() of random existing docs (no preceding upsert)
    rng = random.Random(1)
    look = []
    for _ in range(min(2000, n)):
        did = f"d{rng.randrange(n)}"
        t0 = time.perf_counter()
        ix.related(did)
        look.append(time.perf_counter() - t0)
    qs = ["oil prices", "election labour", "mobile phone games", "football cup final", "Kazakhstan",
          "saiga census"]  # the last two match few or no key terms: the vector store is scanned too
    srch = []
    for _ in range(40):
        for q in qs:
            t0 = time.perf_counter()
            ix.search(q, limit=10)
            srch.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    blob = ix.dump()
    dump_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ix2 = RelatedIndex.load(blob)
    load_s = time.perf_counter() - t0
    assert len(ix2) == len(ix)
    del ix2
    tail = slice(int(n * 0.9), n)
    st = ix.stats()
    return {
        "docs": n,
        "upsert_related_ms_p50": pct(both, 50), "upsert_related_ms_p99": pct(both, 99),
        "upsert_related_ms_p99_last10pct": pct(both[tail], 99),
        "upsert_ms_p50": pct(up, 50), "upsert_ms_p99": pct(up, 99),
        "related_after_upsert_ms_p99": pct(rel, 99),
        "lookup_related_ms_p50": pct(look, 50), "lookup_related_ms_p99": pct(look, 99),
        "search_ms_p50": pct(srch, 50), "search_ms_p99": pct(srch, 99),
        "throughput_docs_per_s": n / wall,
        "index_rss_mb": rss1 - rss0, "process_rss_mb": rss1,
        "tracemalloc_mb": traced, "approx_index_mb": st["approx_bytes"] / 2**20,
        "dump_mb": len(blob) / 2**20, "dump_s": dump_s, "load_s": load_s,
        "terms": st["terms"], "postings": st["postings"], "dup_clusters": st["clusters"],
    }


def bench_baseline(src: Source, n: int, k: int, queries: int) -> dict:
    b = NaiveTfidf()
    lat = []
    t_load = time.perf_counter()
    for i, d in enumerate(src.docs(n)):
        if i < n - queries:
            b.upsert(d)
            continue
        t0 = time.perf_counter()
        b.upsert(d)
        b.related(k)
        lat.append(time.perf_counter() - t0)
    total = time.perf_counter() - t_load
    return {"docs": n, "timed_arrivals": len(lat),
            "upsert_related_ms_p50": pct(lat, 50), "upsert_related_ms_p99": pct(lat, 99),
            "throughput_docs_per_s_at_size": 1.0 / float(np.mean(lat)) if lat else float("nan"),
            "approx_index_mb": b.nbytes() / 2**20, "build_s": total}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="related-articles index benchmark")
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--quick", action="store_true", help="small run (2,000 docs)")
    ap.add_argument("--k", type=int, default=6)
    ap.add_argument("--baseline-queries", type=int, default=200)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--tracemalloc", action="store_true", help="also trace Python allocations (slower)")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    sizes = [2000] if args.quick else [int(x) for x in args.sizes.split(",") if x]
    src = Source(args.data)
    results = []
    for n in sizes:
        ours = bench_ours(src, n, args.k, args.tracemalloc)
        base = None if args.no_baseline else bench_baseline(src, n, args.k, min(args.baseline_queries, n))
        results.append({"size": n, "ours": ours, "baseline": base})
        print(f"\n== {n:,} docs ==")
        keys = ["upsert_related_ms_p50", "upsert_related_ms_p99", "throughput_docs_per_s", "approx_index_mb"]
        print(f"{'metric':36s} {'ours':>10s} {'baseline':>10s}")
        for key, v in ours.items():
            if key == "docs":
                continue
            bv = "" if base is None else base.get(key, base.get(key + "_at_size", "") if key in keys else "")
            fv = "-" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))
            fb = f"{bv:.2f}" if isinstance(bv, float) else str(bv)
            print(f"{key:36s} {fv:>10s} {fb:>10s}")
        if base is not None:
            print(f"(baseline: naive brute force, last {base['timed_arrivals']} arrivals timed; "
                  f"bulk load {base['build_s']:.1f}s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

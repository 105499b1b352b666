"""Offline evaluation of the related-articles engine against a TF-IDF cosine baseline.

    python -m services.linking.evaluate [--semeval PATH] [--lp50-docs PATH --lp50-pairs PATH
        --lp50-background PATH] [--bbc PATH] [--json OUT]

Data defaults to ``<repo>/../shared/data/news/...`` (the shared data folder beside the clone).
The texts are read at run time only; nothing from them is stored in the repository.

Baseline ("TF-IDF cosine", Lucene more_like_this / scikit-learn TfidfVectorizer style):
lower-cased ``\\b\\w\\w+\\b`` tokens, no stop words, no stemming, raw term frequency,
smoothed IDF ``ln((1+N)/(1+df)) + 1`` fitted on the same corpus, L2-normalised, cosine.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from services.linking.relatedness import Doc, RelatedIndex

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA = REPO_ROOT.parent / "shared" / "data" / "news"

csv.field_size_limit(1 << 30)


# ------------------------------------------------------------------------------------ metrics
def pearson(x, y) -> float:
    x = np.asarray(x, float) - np.mean(x)
    y = np.asarray(y, float) - np.mean(y)
    d = math.sqrt(float((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / d) if d else float("nan")


def _rank(a) -> np.ndarray:
    """Average ranks (ties share the mean rank)."""
    a = np.asarray(a, float)
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(len(a), float)
    sa = a[order]
    i = 0
    while i < len(a):
        j = i
        while j + 1 < len(a) and sa[j + 1] == sa[i]:
            j += 1
        ranks[order[i: j + 1]] = (i + j) / 2.0 + 1
        i = j + 1
    return ranks


def spearman(x, y) -> float:
    return pearson(_rank(x), _rank(y))


def roc_auc(pos, neg) -> float:
    """Probability that a positive scores above a negative (ties count half)."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    if not len(pos) or not len(neg):
        return float("nan")
    r = _rank(np.concatenate([pos, neg]))
    return float((r[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


# ------------------------------------------------------------------------------------ baseline
_BASE_TOKEN = re.compile(r"\b\w\w+\b")


class TfidfBaseline:
    """Plain TF-IDF cosine (see module docstring)."""

    def __init__(self, corpus: list[str]) -> None:
        self.n = len(corpus)
        self.df: Counter = Counter()
        for text in corpus:
            self.df.update(set(_BASE_TOKEN.findall(text.lower())))

    def vector(self, text: str) -> dict[str, float]:
        tf = Counter(_BASE_TOKEN.findall(text.lower()))
        v = {t: c * (math.log((1 + self.n) / (1 + self.df.get(t, 0))) + 1) for t, c in tf.items()}
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        return {t: x / norm for t, x in v.items()}

    @staticmethod
    def cosine(a: dict[str, float], b: dict[str, float]) -> float:
        if len(a) > len(b):
            a, b = b, a
        return sum(x * b.get(t, 0.0) for t, x in a.items())

    def similarity(self, a: str, b: str) -> float:
        return self.cosine(self.vector(a), self.vector(b))


class _Matrix:
    """Inverted index over L2-normalised sparse vectors for brute-force baseline retrieval."""

    def __init__(self, vecs: list[dict[str, float]]) -> None:
        self.vecs = vecs
        post: dict[str, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
        for i, v in enumerate(vecs):
            for t, x in v.items():
                post[t][0].append(i)
                post[t][1].append(x)
        self.post = {t: (np.asarray(d, np.int64), np.asarray(w, np.float64)) for t, (d, w) in post.items()}

    def scores(self, i: int) -> np.ndarray:
        """Cosine of doc i with every doc (dense result)."""
        out = np.zeros(len(self.vecs))
        for t, x in self.vecs[i].items():
            d, w = self.post[t]
            out[d] += x * w
        return out


# ------------------------------------------------------------------------------------ SemEval
def eval_semeval(path: Path, tuning: dict | None = None) -> dict:
    rows = list(csv.DictReader(open(path, encoding="utf-8", newline="")))
    arts: dict[str, tuple[str, str]] = {}
    for r in rows:
        a, b = r["pair_id"].split("_")
        arts.setdefault(a, (r["lang1"], r["text1"]))
        arts.setdefault(b, (r["lang2"], r["text2"]))
    ids = list(arts)
    docs = {i: Doc(i, lang, "", text, 0.0) for i, (lang, text) in arts.items()}
    t0 = time.perf_counter()
    index = RelatedIndex(**(tuning or {}))
    for i in ids:
        index.upsert(docs[i])
    build_s = time.perf_counter() - t0
    base = TfidfBaseline([arts[i][1] for i in ids])
    bvec = {i: base.vector(arts[i][1]) for i in ids}

    ours, basel, gold, enen, cross = [], [], [], [], []
    for r in rows:
        a, b = r["pair_id"].split("_")
        ours.append(index.similarity(docs[a], docs[b]))
        basel.append(base.cosine(bvec[a], bvec[b]))
        gold.append(-float(r["Overall"]))
        enen.append(r["lang1"] == "en" and r["lang2"] == "en")
        cross.append(r["lang1"] != r["lang2"])
    ours, basel, gold, enen, cross = map(np.asarray, (ours, basel, gold, enen, cross))
    related = gold >= -2.0
    unrelated = gold <= -3.5

    # retrieval: each direction of each pair with Overall <= 1.5 is a query over the pool
    mat = _Matrix([bvec[i] for i in ids])
    pos = {i: n for n, i in enumerate(ids)}
    queries = []
    for r in rows:
        if float(r["Overall"]) <= 1.5:
            a, b = r["pair_id"].split("_")
            if a != b:
                queries += [(a, b), (b, a)]
    ranks_ours, ranks_base = [], []
    for q, target in queries:
        nb = [m.id for m in index.neighbours(q, limit=100)]
        ranks_ours.append(nb.index(target) + 1 if target in nb else math.inf)
        s = mat.scores(pos[q])
        s[pos[q]] = -np.inf
        ranks_base.append(int((s > s[pos[target]]).sum()) + 1)

    def retrieval(ranks):
        r = np.asarray(ranks, float)
        return {"recall@6": float(np.mean(r <= 6)), "mrr": float(np.mean(1.0 / r))}

    def figures(s, ranks):
        return {
            "pearson_en_en": pearson(s[enen], gold[enen]),
            "spearman_en_en": spearman(s[enen], gold[enen]),
            "pearson_all": pearson(s, gold),
            "spearman_all": spearman(s, gold),
            "pearson_cross_lingual": pearson(s[cross], gold[cross]),
            "spearman_cross_lingual": spearman(s[cross], gold[cross]),
            "roc_auc": roc_auc(s[related], s[unrelated]),
            **retrieval(ranks),
        }

    return {
        "pairs": len(rows), "en_en_pairs": int(enen.sum()), "cross_lingual_pairs": int(cross.sum()),
        "articles": len(ids),
        "retrieval_queries": len(queries), "auc_pos": int(related.sum()), "auc_neg": int(unrelated.sum()),
        "index_build_s": round(build_s, 2),
        "ours": figures(ours, ranks_ours), "baseline": figures(basel, ranks_base),
    }


# ------------------------------------------------------------------------------------ LP50
def eval_lp50(docs_path: Path, pairs_path: Path, background_path: Path | None, tuning: dict | None = None) -> dict:
    docs: dict[str, str] = {}
    with open(docs_path, encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            docs[r["doc_id"]] = r["text"]
    background = []
    if background_path and background_path.exists():
        background = [ln.strip() for ln in open(background_path, encoding="utf-8", errors="replace") if ln.strip()]
    index = RelatedIndex(**(tuning or {}))
    for n, text in enumerate(background):
        index.upsert(Doc(f"bg{n}", "en", "", text, 0.0))
    dd = {i: Doc(f"lp{i}", "en", "", t, 0.0) for i, t in docs.items()}
    for d in dd.values():
        index.upsert(d)
    base = TfidfBaseline(list(docs.values()) + background)
    bvec = {i: base.vector(t) for i, t in docs.items()}
    ours, basel, gold = [], [], []
    for r in csv.DictReader(open(pairs_path, encoding="utf-8", newline="")):
        a, b = r["doc_i"], r["doc_j"]
        ours.append(index.similarity(dd[a], dd[b]))
        basel.append(base.cosine(bvec[a], bvec[b]))
        gold.append(float(r["human_similarity"]))
    return {
        "pairs": len(gold), "background_docs": len(background),
        "ours": {"pearson": pearson(ours, gold), "spearman": spearman(ours, gold)},
        "baseline": {"pearson": pearson(basel, gold), "spearman": spearman(basel, gold)},
    }


# ------------------------------------------------------------------------------------ BBC
def eval_bbc(path: Path, k: int = 6, seed: int = 20050101, tuning: dict | None = None) -> dict:
    rows = list(csv.DictReader(open(path, encoding="utf-8", newline="")))
    random.Random(seed).shuffle(rows)  # the file is sorted by category: use a fixed random arrival order
    index = RelatedIndex(k=k, **(tuning or {}))
    cat = {r["doc_id"]: r["category"] for r in rows}
    prec, lengths, lat = [], [], []
    for n, r in enumerate(rows):
        d = Doc(r["doc_id"], "en", r["title"], r["text"], 0.0)
        t0 = time.perf_counter()
        index.upsert(d)
        rel = index.related(d.id, k)
        lat.append(time.perf_counter() - t0)
        if rel:
            prec.append(sum(cat[m.id] == r["category"] for m in rel) / len(rel))
            lengths.append(len(rel))

    base = TfidfBaseline([r["title"] + "\n" + r["text"] for r in rows])
    mat = _Matrix([base.vector(r["title"] + "\n" + r["text"]) for r in rows])
    bprec = []
    for n, r in enumerate(rows[1:], start=1):
        s = mat.scores(n)[:n]
        top = np.argsort(-s, kind="stable")[:k]
        bprec.append(sum(rows[j]["category"] == r["category"] for j in top) / len(top))

    # duplicate recall: exact-duplicate groups by text hash
    groups = defaultdict(list)
    for r in rows:
        if r["is_exact_duplicate_of_other"].strip() in ("1", "true", "True"):
            groups[r["text_md5_12"]].append(r["doc_id"])
    pairs = [(g[i], g[j]) for g in groups.values() for i in range(len(g)) for j in range(i + 1, len(g))]
    found = sum(b in index.duplicates(a) and a in index.duplicates(b) for a, b in pairs)
    md5 = {r["doc_id"]: r["text_md5_12"] for r in rows}
    flagged = {tuple(sorted((a, b))) for a in cat for b in index.duplicates(a)}
    false_dups = sum(md5[a] != md5[b] for a, b in flagged)
    lat_ms = np.asarray(lat) * 1000
    return {
        "articles": len(rows), "k": k,
        "ours": {"precision@k": float(np.mean(prec)), "mean_list_length": float(np.mean(lengths)),
                 "dup_pairs": len(pairs), "dup_recall": found / len(pairs) if pairs else float("nan"),
                 "flagged_dup_pairs": len(flagged), "flagged_not_exact": false_dups,
                 "upsert_related_ms_p50": float(np.percentile(lat_ms, 50)),
                 "upsert_related_ms_p99": float(np.percentile(lat_ms, 99))},
        "baseline": {"precision@k": float(np.mean(bprec))},
    }


# ------------------------------------------------------------------------------------ report
def _fmt(x) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def print_table(results: dict) -> None:
    lines = [f"{'benchmark / metric':44s} {'ours':>8s} {'baseline':>9s}", "-" * 63]
    for bench, res in results.items():
        if "ours" not in res:
            continue
        for key, v in res["ours"].items():
            b = res.get("baseline", {}).get(key, "")
            lines.append(f"{bench + ' ' + key:44s} {_fmt(v):>8s} {_fmt(b):>9s}")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--semeval", type=Path, default=DATA / "semeval2022-task8-dev" / "pairs.csv")
    ap.add_argument("--lp50-docs", type=Path, default=DATA / "lee-lp50" / "docs.tsv")
    ap.add_argument("--lp50-pairs", type=Path, default=DATA / "lee-lp50" / "pairs.csv")
    ap.add_argument("--lp50-background", type=Path, default=DATA / "lee-lp50" / "lee_background.cor")
    ap.add_argument("--bbc", type=Path, default=DATA / "bbc" / "articles.csv")
    ap.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    ap.add_argument("--only", default="semeval,lp50,bbc", help="comma-separated subset to run")
    args = ap.parse_args(argv)
    only = set(args.only.split(","))
    results: dict[str, dict] = {}
    if "semeval" in only and args.semeval.exists():
        results["semeval"] = eval_semeval(args.semeval)
    if "lp50" in only and args.lp50_docs.exists() and args.lp50_pairs.exists():
        results["lp50"] = eval_lp50(args.lp50_docs, args.lp50_pairs, args.lp50_background)
    if "bbc" in only and args.bbc.exists():
        results["bbc"] = eval_bbc(args.bbc)
    if not results:
        print("no evaluation data found (looked under %s)" % DATA, file=sys.stderr)
        return 1
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Narration benchmark.

1. Narration wall time per 1,000 words, per language (espeak-ng | opusenc with the service's
   settings: niceness, Opus complexity, bitrate). Needs only the two tools.
2. A burst of N articles through ingestion → storage → linking, run twice in the same run with
   fresh topics and a fresh database each time: without narration, then with narration running
   (as separate processes, as deployed). Reports the time until every article is stored and
   linked in both cases, their ratio, and how long narration takes to drain its queue.
   Needs a running stack (``make run``, or the test stack with KAZPOST_KEEP_STACK=1 and
   ``eval "$(deploy/local/stack.sh env)"`` with its variables).

    python -m benchmarks.narration_bench                       # 1,000 words per language + burst of 500
    python -m benchmarks.narration_bench --n 50 --burst-words 40   # a quick run
    python -m benchmarks.narration_bench --skip-burst --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import random
import signal
import socket
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.narration.settings import NarrationSettings
from services.narration.tts import Synthesizer, voice_for
from shared.kafka import all_topics, ensure_topics
from shared.mongo import database, init_database, make_client
from shared.settings import TOPIC_FIELDS, KafkaSettings, MongoSettings

REPO = pathlib.Path(__file__).resolve().parents[1]

SENTENCES = {
    "kk": ["Астана қаласында жаңа мектеп ашылды.", "Оқушылар мен мұғалімдер жаңа ғимаратқа көшті.",
           "Үкімет жобаға қосымша қаражат бөлді.", "Құрылыс екі жылға созылды.",
           "Өңірде астық жинау науқаны аяқталды.", "Фермерлер биылғы өнімге риза екенін айтты.",
           "Алматы мен Астана арасында жаңа пойыз жүре бастады.", "Билеттер бекеттерде және интернетте сатылады."],
    "ru": ["В Астане открылась новая школа.", "Ученики и учителя переехали в новое здание.",
           "Правительство выделило на проект дополнительные средства.", "Строительство длилось два года.",
           "В регионе завершилась уборка зерна.", "Фермеры довольны урожаем этого года.",
           "Между Алматы и Астаной пошёл новый поезд.", "Билеты продаются на вокзалах и в интернете."],
    "en": ["A new school opened in Astana.", "Pupils and teachers moved into the new building.",
           "The government gave the project extra money.", "Construction took two years.",
           "The grain harvest in the region is over.", "Farmers said they were pleased with this year's crop.",
           "A new train now runs between Almaty and Astana.", "Tickets are sold at stations and online."],
}


def text_of(language: str, words: int, seed: int = 0) -> list[str]:
    """Paragraphs of about ``words`` words (four sentences each)."""
    pool = SENTENCES[language]
    out, paragraph, count, i = [], [], 0, seed
    while count < words:
        sentence = pool[i % len(pool)]
        paragraph.append(sentence)
        count += len(sentence.split())
        i += 1
        if len(paragraph) == 4:
            out.append(" ".join(paragraph))
            paragraph = []
    if paragraph:
        out.append(" ".join(paragraph))
    return out


async def per_language(languages: list[str], words: int) -> list[dict]:
    settings = NarrationSettings()
    synth = Synthesizer(settings)
    if (problem := await synth.check()) is not None:
        raise SystemExit(f"narration tools: {problem}")
    rows = []
    for language in languages:
        paragraphs = text_of(language, words)
        speech = await synth.synthesize(paragraphs, voice_for(language, settings.voices) or language, title="bench",
                                        language=language, serial=1)
        rows.append({
            "language": language, "words": speech.words, "wall_s": round(speech.seconds, 2),
            "wall_s_per_1000_words": round(speech.seconds * 1000 / speech.words, 2),
            "audio_s": round(speech.duration_s, 1), "audio_s_per_wall_s": round(speech.duration_s / speech.seconds, 1),
            "kbytes": round(len(speech.data) / 1024),
        })
    return rows


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for r in rows:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(columns, widths)))


# --- the burst ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def varied_text(language: str, words: int, seed: int) -> list[str]:
    """Paragraphs of about ``words`` words, different for every seed: random sentences over the
    vocabulary of :data:`SENTENCES`, so the burst's articles are not near-duplicates of each other
    (which would make linking cluster them all)."""
    rng = random.Random(f"{language}:{seed}")
    vocabulary = sorted({w.strip(".,").lower() for s in SENTENCES[language] for w in s.split()})
    sentences, count = [], 0
    while count < words:
        sentence = rng.sample(vocabulary, rng.randint(5, 9))
        sentences.append(" ".join(sentence).capitalize() + ".")
        count += len(sentence)
    return [" ".join(sentences[i:i + 4]) for i in range(0, len(sentences), 4)]


def ninjs(uri: str, language: str, words: int, n: int, published: datetime) -> dict:
    body = "".join(f"<p>{p}</p>" for p in varied_text(language, words, seed=n))
    return {
        "uri": uri, "type": "text", "version": 1, "versionCreated": published.isoformat(),
        "firstCreated": published.isoformat(), "pubStatus": "usable", "language": language,
        "headlines": [{"role": "main", "value": f"{SENTENCES[language][n % 8].rstrip('.')} {n}"}],
        "bodies": [{"role": "main", "contentType": "text/html", "value": body}],
        "subjects": [{"name": "News", "rel": "section"}],
    }


class Case:
    """One run of the burst: its own topics, database, consumer groups and service processes."""

    SERVICES = ("ingestion", "storage", "linking")

    def __init__(self, name: str, run: str, narration: bool) -> None:
        self.name, self.narration = name, narration
        base = KafkaSettings()
        self.prefix = f"nb{run}{name}."
        self.kafka = base.model_copy(update={n: self.prefix + getattr(base, n) for n in TOPIC_FIELDS})
        self.mongo = MongoSettings(database=f"kazpost_nb{run}{name}")
        self.services = [*self.SERVICES, *(["narration"] if narration else [])]
        self.groups = {s: f"nb{run}{name}-{s}" for s in self.services}
        self.ports = {s: free_port() for s in self.services}
        self.procs: dict[str, asyncio.subprocess.Process] = {}

    def env(self, service: str) -> dict[str, str]:
        env = dict(os.environ)
        for field in TOPIC_FIELDS:
            env[f"KAZPOST_KAFKA_{field.upper()}"] = getattr(self.kafka, field)
        env["KAZPOST_MONGO_DATABASE"] = self.mongo.database
        env[f"KAZPOST_{service.upper()}_GROUP_ID"] = self.groups[service]
        env[f"KAZPOST_{service.upper()}_OPS_PORT"] = str(self.ports[service])
        env.setdefault("KAZPOST_LOG_LEVEL", "WARNING")
        env["KAZPOST_LOG_FORMAT"] = "json"
        return env

    async def start(self, logs: pathlib.Path) -> None:
        await ensure_topics(self.kafka, all_topics(self.kafka))
        client = make_client(self.mongo, app_name="bench")
        await init_database(database(client, self.mongo))
        await client.close()
        logs.mkdir(parents=True, exist_ok=True)
        for s in self.services:
            out = open(logs / f"{self.name}-{s}.log", "wb")  # noqa: SIM115 - closed with the process
            self.procs[s] = await asyncio.create_subprocess_exec(
                sys.executable, "-m", f"services.{s}", cwd=REPO, env=self.env(s), stdout=out, stderr=out)
        async with aiohttp.ClientSession() as http:
            for s in self.services:
                deadline = time.monotonic() + 120
                while True:
                    if self.procs[s].returncode is not None:
                        raise SystemExit(f"{s} exited with {self.procs[s].returncode}; see {logs}/{self.name}-{s}.log")
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(f"http://127.0.0.1:{self.ports[s]}/readyz") as r:
                            if r.status == 200:
                                break
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{s} not ready after 120 s")
                    await asyncio.sleep(0.2)

    async def stop(self) -> None:
        for proc in self.procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        client = make_client(self.mongo, app_name="bench")
        await client.drop_database(self.mongo.database)
        await client.close()
        admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka.bootstrap_servers)
        await admin.start()
        try:
            await admin.delete_topics(all_topics(self.kafka))
        except Exception as exc:  # noqa: BLE001 - tidying up only
            print(f"  (could not delete the topics of case {self.name}: {exc!r})")
        finally:
            await admin.close()


async def progress(admin: AIOKafkaAdminClient, ends: AIOKafkaConsumer, group: str, topic: str,
                   partitions: int) -> tuple[int, int, bool]:
    """(messages committed by ``group``, messages in ``topic``, every partition caught up)."""
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    end = await ends.end_offsets(tps)
    committed = await admin.list_consumer_group_offsets(group, partitions=tps)
    done = {tp: (committed[tp].offset if committed.get(tp) is not None and committed[tp].offset >= 0 else 0) for tp in tps}
    return sum(done.values()), sum(end.values()), all(done[tp] >= end[tp] for tp in tps)


async def burst(case: Case, n: int, words: int, languages: list[str], timeout: float, logs: pathlib.Path) -> dict:
    await case.start(logs)
    admin = AIOKafkaAdminClient(bootstrap_servers=case.kafka.bootstrap_servers)
    ends = AIOKafkaConsumer(bootstrap_servers=case.kafka.bootstrap_servers, group_id=None)
    producer = AIOKafkaProducer(bootstrap_servers=case.kafka.bootstrap_servers, enable_idempotence=True, acks="all",
                                linger_ms=5)
    await admin.start()
    await ends.start()
    await producer.start()
    result: dict = {"case": case.name, "narration_running": case.narration, "articles": n}
    try:
        now = datetime.now(UTC)
        k = case.kafka
        everyone = [("ingestion", k.topic_upstream), ("storage", k.topic_ingested), ("linking", k.topic_stored),
                    *([("narration", k.topic_stored)] if case.narration else [])]
        # A first article through every service, so every consumer has joined its group before the clock starts.
        warm = ninjs(f"urn:nbench:{case.prefix}warm-up", languages[0], 10, 0, now)
        await producer.send_and_wait(k.topic_upstream, json.dumps(warm).encode(), key=warm["uri"].encode())
        deadline = time.monotonic() + 120
        while not all([(await progress(admin, ends, case.groups[s], t, k.partitions))[1:] == (1, True) for s, t in everyone]):
            if time.monotonic() > deadline:
                raise SystemExit(f"case {case.name}: the warm-up article did not get through in 120 s")
            await asyncio.sleep(0.1)
        items = [ninjs(f"urn:nbench:{case.prefix}{i}", languages[i % len(languages)], words, i, now - timedelta(minutes=i))
                 for i in range(n)]
        n += 1  # counts below include the warm-up article
        t0 = time.monotonic()
        futures = [await producer.send(case.kafka.topic_upstream, json.dumps(i).encode(), key=i["uri"].encode())
                   for i in items]
        await asyncio.gather(*futures)
        result["published_s"] = round(time.monotonic() - t0, 2)
        stages = {"stored": [("storage", k.topic_ingested)], "linked": [("linking", k.topic_stored)]}
        pending = dict(stages)
        if case.narration:
            pending["narrated"] = [("narration", k.topic_stored)]
        shown = t0
        while pending:
            if time.monotonic() - t0 > timeout:
                raise SystemExit(f"case {case.name}: {sorted(pending)} not done after {timeout}s")
            state = {}
            for service, topic in everyone:
                state[service] = await progress(admin, ends, case.groups[service], topic, k.partitions)
            for stage, needs in list(pending.items()):
                if all(state[s][1] >= n and state[s][2] for s in ["ingestion", *(svc for svc, _ in needs)]):
                    result[f"{stage}_s"] = round(time.monotonic() - t0, 2)
                    del pending[stage]
            if time.monotonic() - shown > 15:
                shown = time.monotonic()
                print(f"    {time.monotonic() - t0:5.0f}s " + ", ".join(f"{s} {c}/{e}" for s, (c, e, _) in state.items()),
                      flush=True)
            await asyncio.sleep(0.25)
        result["stored_and_linked_s"] = max(result["stored_s"], result["linked_s"])
        client = make_client(case.mongo, app_name="bench")
        db = database(client, case.mongo)
        result["articles_stored"] = await db["articles"].count_documents({}) - 1  # without the warm-up article
        if case.narration:
            result["audio_documents"] = await db["audio"].count_documents({}) - 1
        await client.close()
    finally:
        await producer.stop()
        await ends.stop()
        await admin.close()
        await case.stop()
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--words", type=int, default=1000, help="words narrated per language in part 1")
    parser.add_argument("--languages", default="kk,ru,en")
    parser.add_argument("--n", type=int, default=500, help="articles in the burst")
    parser.add_argument("--burst-words", type=int, default=60, help="words of body per burst article")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds a burst case may take")
    parser.add_argument("--skip-burst", action="store_true")
    parser.add_argument("--skip-words", action="store_true")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    languages = [x.strip() for x in args.languages.split(",") if x.strip()]
    report: dict = {"at": datetime.now(UTC).isoformat(), "cpus": os.cpu_count(), "settings": {
        k: v for k, v in NarrationSettings().model_dump().items() if k in
        ("words_per_minute", "bitrate_kbps", "complexity", "concurrency", "nice", "batch_size")}}
    print(f"narration settings: {report['settings']}")
    if not args.skip_words:
        rows = await per_language(languages, args.words)
        report["per_language"] = rows
        print(f"\nnarration of about {args.words} words per language (one narration at a time):")
        print_table(rows, ["language", "words", "wall_s", "wall_s_per_1000_words", "audio_s", "audio_s_per_wall_s", "kbytes"])
    if not args.skip_burst:
        run = uuid.uuid4().hex[:6]
        logs = REPO / ".run" / "narration-bench" / run
        print(f"\nburst of {args.n} articles ({args.burst_words} words each, {', '.join(languages)}); service logs in {logs}")
        cases = []
        for name, narration in (("a", False), ("b", True)):
            result = await burst(Case(name, run, narration), args.n, args.burst_words, languages, args.timeout, logs)
            cases.append(result)
            print(f"  narration {'running' if narration else 'not running'}: stored {result['stored_s']}s, "
                  f"linked {result['linked_s']}s"
                  + (f", narration queue drained {result['narrated_s']}s ({result['audio_documents']} audio documents)"
                     if narration else ""))
        without, with_ = cases
        report["burst"] = {"cases": cases, "ratio_stored_and_linked_with_over_without": round(
            with_["stored_and_linked_s"] / without["stored_and_linked_s"], 2)}
        print()
        print_table([{
            "narration": "running" if c["narration_running"] else "not running", "articles": c["articles"],
            "published_s": c["published_s"], "stored_s": c["stored_s"], "linked_s": c["linked_s"],
            "narration_drained_s": c.get("narrated_s", "-"), "audio_docs": c.get("audio_documents", "-"),
        } for c in cases], ["narration", "articles", "published_s", "stored_s", "linked_s", "narration_drained_s", "audio_docs"])
        print(f"pipeline (stored + linked) with narration / without: "
              f"{report['burst']['ratio_stored_and_linked_with_over_without']}x")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
        print(f"\nfigures written to {args.json}")


if __name__ == "__main__":
    asyncio.run(main())

"""``kazpost``: the operator command line.

    kazpost init                      create Kafka topics and database collections (idempotent)
    kazpost publish PATH [PATH ...]   publish ninjs JSON files (or directories of them) upstream,
                                      with a progress bar for large sets
    kazpost status ID|URI             one article across the pipeline: stored version and state,
                                      related list, audio, and whether the gateway shows it
    kazpost lag [--group G ...]       consumer lag per group, topic and partition
    kazpost rebuild SERVICE [--fresh] [--yes]
                                      rebuild a service's read model by replaying its input topic
                                      from the beginning (the service must be stopped)
    kazpost dlq TOPIC [--limit N] [--replay] [--only P:O,...]
                                      list dead-lettered messages with their reasons; replay them
    kazpost wait-for URL [--timeout]  wait until an HTTP endpoint answers 200

Exit codes: 0 done; 1 failed (a dependency unreachable, nothing found, refused as unsafe);
2 bad usage, or a confirmation (``--yes``) is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pymongo
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.events import article_id_for
from shared.kafka import HEADER_CORRELATION, all_topics, connection_options, ensure_topics, make_consumer, make_producer
from shared.mongo import ARTICLES, FRONTS, RELATED, VERSIONS, database, init_database, make_client
from shared.packed import unpack
from shared.settings import KafkaSettings, MongoSettings, kafka_field, mongo_field


class CliSettings(BaseSettings):
    """Settings of the operator CLI (env prefix ``KAZPOST_CLI_``)."""

    model_config = SettingsConfigDict(env_prefix="KAZPOST_CLI_", env_nested_delimiter="__", extra="ignore")

    kafka: KafkaSettings = kafka_field()
    mongo: MongoSettings = mongo_field()
    extra_topics: list[str] = ["newsletter.signups"]
    gateway_url: str = "http://127.0.0.1:8080"


class CliError(Exception):
    """A clear, expected failure: printed as ``error: ...`` with exit code ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


async def cmd_init(settings: CliSettings) -> int:
    created = await ensure_topics(settings.kafka, [*all_topics(settings.kafka), *settings.extra_topics])
    client = make_client(settings.mongo, app_name="cli")
    try:
        await init_database(database(client, settings.mongo))
    finally:
        await client.close()
    print(f"topics created: {', '.join(created) if created else 'none (all existed)'}; collections ready")
    return 0


def ninjs_files(paths: list[str]) -> list[pathlib.Path]:
    files: list[pathlib.Path] = []
    for raw in paths:
        path = pathlib.Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*.json") if p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no such file or directory: {raw}")
    return files


async def cmd_publish(settings: CliSettings, paths: list[str], topic: str | None, *, progress: bool | None = None) -> int:
    """Publish every file (key = its ``uri``). A progress bar (on stderr) counts acknowledged
    items: by default for 20 files or more when stderr is a terminal; ``progress`` forces it."""
    from tqdm import tqdm

    files = ninjs_files(paths)
    target = topic or settings.kafka.topic_upstream
    show = progress if progress is not None else (len(files) >= 20 and sys.stderr.isatty())
    producer = make_producer(settings.kafka, "cli")
    await producer.start()
    failures = 0
    sent = []
    bar = tqdm(total=len(files), unit="item", desc=f"publishing to {target}", file=sys.stderr, disable=not show,
               mininterval=0.2)
    try:
        for path in files:
            data = path.read_bytes()
            try:
                key = str(json.loads(data).get("uri", "")).encode("utf-8") or None
            except (ValueError, AttributeError):
                key = None  # still published: ingestion dead-letters it with the reason
            fut = await producer.send(target, value=data, key=key,
                                      headers=[(HEADER_CORRELATION, uuid.uuid4().hex.encode())])
            fut.add_done_callback(lambda _: bar.update(1))
            sent.append((path, fut))
        for path, fut in sent:
            try:
                await fut
            except Exception as exc:  # noqa: BLE001 - report every failure, keep going
                failures += 1
                bar.write(f"error: {path}: {exc!r}", file=sys.stderr)
    finally:
        await producer.stop()
        bar.close()
    print(f"published {len(files) - failures} of {len(files)} items to {target}")
    return 1 if failures else 0


# --- status ------------------------------------------------------------------------------------
def resolve_article(ref: str) -> tuple[str, str | None]:
    """(article id, uri or None) of an article id (16 hex digits) or a ninjs uri."""
    ref = ref.strip()
    if not ref:
        raise CliError("give an article id or uri", code=2)
    if len(ref) == 16 and all(c in "0123456789abcdef" for c in ref):
        return ref, None
    return article_id_for(ref), ref


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


async def gateway_view(gateway_url: str, article_id: str, timeout: float = 5.0) -> dict[str, Any]:
    """What the gateway answers for the article (its JSON API)."""
    import aiohttp

    url = f"{gateway_url.rstrip('/')}/api/v1/articles/{article_id}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http, http.get(url) as r:
            body = await r.json(content_type=None) if r.content_type == "application/json" else None
            view: dict[str, Any] = {"status": r.status, "url": url, "visible": r.status == 200}
            if r.status == 200 and isinstance(body, dict):
                view.update(page=body.get("url"), version=body.get("version"), related=len(body.get("related", [])))
            return view
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        return {"status": None, "url": url, "visible": None, "error": f"unreachable ({type(exc).__name__}: {exc})"}


async def article_status(settings: CliSettings, ref: str, *, gateway: bool = True) -> dict[str, Any]:
    """The article across the pipeline; every read is one document by ``_id``."""
    article_id, uri = resolve_article(ref)
    client = make_client(settings.mongo, app_name="cli")
    try:
        db = database(client, settings.mongo)
        stored = await db[ARTICLES].find_one({"_id": article_id})
        related = await db[RELATED].find_one({"_id": article_id})
        audio = await db["audio"].find_one({"_id": article_id})
    finally:
        await client.close()
    status: dict[str, Any] = {"id": article_id, "uri": (stored or {}).get("uri") or uri}
    if stored is not None:
        status["stored"] = {
            "version": stored.get("version"), "pub_status": stored.get("pub_status"), "headline": stored.get("headline"),
            "slug": stored.get("slug"), "published_at": _iso(stored.get("first_created")),
            "version_created": _iso(stored.get("version_created")), "stored_at": _iso(stored.get("stored_at")),
            "embargoed_until": _iso(stored.get("embargoed_until")), "killed_at": _iso(stored.get("killed_at")),
            "versions": [h.get("version") for h in stored.get("history", [])],
        }
    else:
        status["stored"] = None
    status["related"] = None if related is None else {
        "rev": related.get("version"), "count": len(unpack(related.get("items"))),
        "duplicates": len(related.get("duplicates", [])), "updated_at": _iso(related.get("updated_at")),
    }
    status["audio"] = None if audio is None else {
        "version": audio.get("version"), "duration_s": audio.get("duration_s"), "size": audio.get("size"),
        "language": audio.get("language"), "created_at": _iso(audio.get("created_at")),
    }
    status["gateway"] = await gateway_view(settings.gateway_url, article_id) if gateway else None
    return status


def format_status(s: dict[str, Any]) -> str:
    lines = [f"article  {s['id']}" + (f"  ({s['uri']})" if s.get("uri") else "")]
    st = s["stored"]
    if st is None:
        lines.append("  stored   no: not in the articles collection")
    else:
        extra = f", killed {st['killed_at']}" if st.get("killed_at") else ""
        extra += f", embargoed until {st['embargoed_until']}" if st.get("embargoed_until") else ""
        lines.append(f"  stored   version {st['version']} ({st['pub_status']}{extra}), stored {st['stored_at']}, "
                     f"versions {', '.join(str(v) for v in st['versions'])}")
        if st.get("headline"):
            lines.append(f"           \"{st['headline']}\", published {st['published_at']}")
    rel = s["related"]
    lines.append("  related  not linked yet" if rel is None else
                 f"  related  rev {rel['rev']}: {rel['count']} item(s), {rel['duplicates']} duplicate(s), updated {rel['updated_at']}")
    audio = s["audio"]
    lines.append("  audio    none" if audio is None else
                 f"  audio    version {audio['version']}, {audio['duration_s']} s, {audio['size']} bytes ({audio['language']})")
    gw = s["gateway"]
    if gw is not None:
        if gw.get("error"):
            lines.append(f"  gateway  {gw['error']} ({gw['url']})")
        elif gw["visible"]:
            lines.append(f"  gateway  visible: 200 {gw.get('page')} (version {gw.get('version')}, {gw.get('related')} related shown)")
        else:
            meaning = {404: "not shown (unknown, withheld or embargoed)", 410: "gone (killed)"}.get(gw["status"], "not shown")
            lines.append(f"  gateway  {meaning}: {gw['status']} {gw['url']}")
    return "\n".join(lines)


async def cmd_status(settings: CliSettings, ref: str, *, as_json: bool = False, gateway: bool = True) -> int:
    status = await article_status(settings, ref, gateway=gateway)
    print(json.dumps(status, ensure_ascii=False, indent=2) if as_json else format_status(status))
    if status["stored"] is None:
        print(f"error: no stored article {status['id']}" + (f" for uri {status['uri']}" if status.get("uri") else ""),
              file=sys.stderr)
        return 1
    return 0


# --- lag ---------------------------------------------------------------------------------------
def _admin(settings: CliSettings):
    from aiokafka.admin import AIOKafkaAdminClient

    return AIOKafkaAdminClient(**connection_options(settings.kafka), client_id=f"{settings.kafka.client_id_prefix}-cli",
                               request_timeout_ms=15_000)


@dataclass
class GroupInfo:
    group: str
    state: str
    members: int


async def describe_group(admin, group: str) -> GroupInfo:
    [response] = await admin.describe_consumer_groups([group])
    error_code, group_id, state, _protocol_type, _protocol, members, *_ = response.groups[0]
    if error_code:
        from aiokafka.errors import for_code

        raise for_code(error_code)(f"describing consumer group {group}")
    return GroupInfo(group_id, state, len(members))


async def group_lag(settings: CliSettings, groups: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per (group, topic, partition): committed offset, end offset, lag, group state."""
    from aiokafka import TopicPartition

    admin = _admin(settings)
    await admin.start()
    consumer = make_consumer(settings.kafka, [], group_id=None, client_id="cli-lag")
    await consumer.start()
    rows: list[dict[str, Any]] = []
    try:
        known = sorted(g for g, *_ in await admin.list_consumer_groups())
        if groups:
            unknown = [g for g in groups if g not in known]
            if unknown:
                raise CliError(f"no such consumer group: {', '.join(unknown)} (known: {', '.join(known) or 'none'})")
            known = [g for g in known if g in groups]
        for group in known:
            info = await describe_group(admin, group)
            committed = {tp: om.offset for tp, om in (await admin.list_consumer_group_offsets(group)).items()}
            if not committed:
                continue
            tps = sorted(committed, key=lambda tp: (tp.topic, tp.partition))
            ends = await consumer.end_offsets([TopicPartition(tp.topic, tp.partition) for tp in tps])
            starts = await consumer.beginning_offsets([TopicPartition(tp.topic, tp.partition) for tp in tps])
            for tp in tps:
                end, offset = ends[tp], committed[tp]
                rows.append({"group": group, "state": info.state, "members": info.members, "topic": tp.topic,
                             "partition": tp.partition, "committed": offset if offset >= 0 else None, "end": end,
                             "lag": end - (offset if offset >= 0 else starts[tp])})
    finally:
        await consumer.stop()
        await admin.close()
    return rows


def format_lag(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no consumer group has committed offsets yet"
    head = ("GROUP", "STATE", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG")
    table = [(r["group"], f"{r['state']} ({r['members']})", r["topic"], str(r["partition"]),
              "-" if r["committed"] is None else str(r["committed"]), str(r["end"]), str(r["lag"])) for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *table)]
    out = ["  ".join(x.ljust(w) for x, w in zip(head, widths))]
    out += ["  ".join(x.ljust(w) for x, w in zip(line, widths)) for line in table]
    totals: dict[str, int] = {}
    for r in rows:
        totals[r["group"]] = totals.get(r["group"], 0) + r["lag"]
    out.append("total lag per group:")
    out += [f"  {g}  {n}" for g, n in totals.items()]
    return "\n".join(out)


async def cmd_lag(settings: CliSettings, groups: list[str] | None = None, *, as_json: bool = False) -> int:
    rows = await group_lag(settings, groups)
    print(json.dumps(rows, indent=2) if as_json else format_lag(rows))
    return 0


# --- rebuild -----------------------------------------------------------------------------------
REBUILD_HELP = """\
Rebuild a service's read model by replaying its input topic from the beginning.

1. Stop every replica of the service (it must not run while its offsets are reset; the
   command checks that its consumer group has no members and refuses otherwise).
2. kazpost rebuild SERVICE            shows the plan (offsets, messages to replay), changes nothing
   kazpost rebuild SERVICE --yes      resets the group to the first offset of every partition
   kazpost rebuild SERVICE --fresh --yes
                                      the same, then empties the collections only this service
                                      writes (indexes are kept), so the replay rebuilds them
                                      from the log alone
3. Start the service again; `kazpost lag --group GROUP` shows the replay's progress.

Every consumer is idempotent (version-guarded writes, listings keyed by article, related lists
rewritten whole), so a replay over existing data (no --fresh) repairs without harm: listings
and related lists are re-applied and events re-published. --fresh needs the log to still start
at offset 0 (nothing removed by retention), else it is refused (--force to accept the loss).
While a --fresh rebuild runs, the site shows only what has been replayed so far.

storage:   articles.ingested -> articles, article_versions, fronts (then re-publishes
           articles.stored, so linking and narration follow)
linking:   articles.stored -> related (delete its snapshot file to rebuild the index as well)
narration: articles.stored -> audio, audio_chunks (narrates every article again: slow)
"""


@dataclass(frozen=True)
class Rebuildable:
    topic_field: str            # the service's input topic (a KafkaSettings field)
    collections: tuple[str, ...]  # the read models it alone writes
    settings_class: str         # "module:Class" of the service's settings (for its group id)
    note: str


REBUILDABLE: dict[str, Rebuildable] = {
    "storage": Rebuildable("topic_ingested", (ARTICLES, VERSIONS, FRONTS), "services.storage.settings:StorageSettings",
                           "storage re-publishes articles.stored for every article, so linking (and narration) "
                           "rewrite their lists and audio as it goes"),
    "linking": Rebuildable("topic_stored", (RELATED,), "services.linking.settings:LinkingSettings",
                           "linking's index is kept by its follower (snapshot file, else rebuilt from the articles "
                           "collection at start-up); delete the snapshot (KAZPOST_LINKING_SNAPSHOT_PATH) to rebuild "
                           "the index too"),
    "narration": Rebuildable("topic_stored", ("audio", "audio_chunks"), "services.narration.settings:NarrationSettings",
                             "narration makes the audio of every article again: this takes a long time"),
}


def default_group(service: str) -> str:
    import importlib

    module, _, name = REBUILDABLE[service].settings_class.partition(":")
    return getattr(importlib.import_module(module), name)().group_id


async def cmd_rebuild(settings: CliSettings, service: str, *, group: str | None = None, fresh: bool = False,
                      yes: bool = False, force: bool = False) -> int:
    """Make a stopped service replay its input topic from the beginning (see REBUILD_HELP)."""
    from aiokafka import TopicPartition
    from aiokafka.structs import OffsetAndMetadata

    if service not in REBUILDABLE:
        raise CliError(f"cannot rebuild {service!r}: choose one of {', '.join(REBUILDABLE)}", code=2)
    spec = REBUILDABLE[service]
    topic = getattr(settings.kafka, spec.topic_field)
    group = group or default_group(service)
    admin = _admin(settings)
    await admin.start()
    try:
        info = await describe_group(admin, group)
        if info.members or info.state not in ("Empty", "Dead"):
            raise CliError(f"consumer group {group} is {info.state} with {info.members} member(s): stop every {service} "
                           f"replica first (the service must not run while its offsets are reset), then run this again")
        consumer = make_consumer(settings.kafka, [], group_id=None, client_id="cli-rebuild")
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(topic)
            for _ in range(50):
                if partitions:
                    break
                await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka: topics() does not fill this
                partitions = consumer.partitions_for_topic(topic)
                await asyncio.sleep(0.1)
            if not partitions:
                raise CliError(f"topic {topic} does not exist")
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            starts = await consumer.beginning_offsets(tps)
            ends = await consumer.end_offsets(tps)
        finally:
            await consumer.stop()
        committed = {tp: om.offset for tp, om in (await admin.list_consumer_group_offsets(group)).items()}
    finally:
        await admin.close()

    replay = sum(ends[tp] - starts[tp] for tp in tps)
    print(f"rebuild {service}: consumer group {group} ({info.state}), input topic {topic}")
    for tp in tps:
        now = committed.get(tp)
        print(f"  partition {tp.partition}: committed {'-' if now is None or now < 0 else now} -> {starts[tp]} "
              f"(replays {ends[tp] - starts[tp]} message(s))")
    print(f"  {replay} message(s) to replay; " + (f"empties {', '.join(spec.collections)} first" if fresh
                                                 else "existing documents are kept (idempotent re-apply)"))
    print(f"  note: {spec.note}")
    trimmed = [tp for tp in tps if starts[tp] > 0]
    if fresh and trimmed and not force:
        raise CliError(f"{topic} no longer starts at offset 0 on partition(s) "
                       f"{', '.join(str(tp.partition) for tp in trimmed)} (retention removed messages): a fresh rebuild "
                       f"would lose those articles. Rebuild without --fresh, or pass --force if that is acceptable")
    if not yes:
        print("nothing changed: run again with --yes to do it", file=sys.stderr)
        return 2

    # Offsets first: if emptying fails afterwards, the replay still repairs what is there.
    consumer = make_consumer(settings.kafka, [], group_id=group, client_id="cli-rebuild")
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.commit({tp: OffsetAndMetadata(starts[tp], "") for tp in tps})
    except Exception as exc:  # the group gained a member meanwhile, or the broker refused
        raise CliError(f"could not reset the offsets of {group}: {exc!r} (is a {service} replica running?)") from None
    finally:
        await consumer.stop()
    if fresh:
        client = make_client(settings.mongo, app_name="cli")
        try:
            db = database(client, settings.mongo)
            for name in spec.collections:
                with pymongo.timeout(600):  # one long call (a whole collection), still bounded
                    result = await db[name].delete_many({})
                print(f"  emptied {name}: {result.deleted_count} document(s) deleted")
        finally:
            await client.close()
    print(f"done: start {service} again; it replays {replay} message(s) from the beginning of {topic}. "
          f"Follow it with `kazpost lag --group {group}`.")
    return 0


async def cmd_dlq(settings: CliSettings, topic: str, limit: int, *, replay: bool = False,
                  offsets: set[tuple[int, int]] | None = None) -> int:
    """List dead letters; with ``replay``, send them back to the topic they came from.

    A replayed message keeps its key, value and original headers (not the ``dlq.*`` ones) and
    gains ``dlq.replayed_from`` = ``<dlq topic>:<partition>:<offset>``. Consumers are
    idempotent, so replaying twice is harmless.
    """
    consumer = make_consumer(settings.kafka, [topic], group_id=None, client_id="cli-dlq")
    producer = make_producer(settings.kafka, "cli-dlq") if replay else None
    await consumer.start()
    if producer is not None:
        await producer.start()
    shown = replayed = 0
    try:
        deadline = time.monotonic() + 5
        while shown < limit and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=limit - shown)
            for records in batch.values():
                for r in records:
                    if offsets is not None and (r.partition, r.offset) not in offsets:
                        continue
                    headers = {k: v.decode("utf-8", "replace") for k, v in (r.headers or ())}
                    source = headers.get("dlq.source_topic")
                    entry = {
                        "partition": r.partition, "offset": r.offset,
                        "key": (r.key or b"").decode("utf-8", "replace"),
                        "reason": headers.get("dlq.reason"),
                        "source": f"{source}:{headers.get('dlq.source_partition')}:{headers.get('dlq.source_offset')}",
                        "attempts": headers.get("dlq.attempts"), "bytes": len(r.value or b""),
                    }
                    if producer is not None:
                        if not source:
                            entry["replayed"] = "no: the message has no dlq.source_topic header"
                        else:
                            kept = [(k, v) for k, v in (r.headers or ()) if not k.startswith("dlq.")]
                            kept.append(("dlq.replayed_from", f"{topic}:{r.partition}:{r.offset}".encode()))
                            await producer.send_and_wait(source, r.value, key=r.key, headers=kept)
                            entry["replayed"] = f"to {source}"
                            replayed += 1
                    print(json.dumps(entry, ensure_ascii=False))
                    shown += 1
    finally:
        await consumer.stop()
        if producer is not None:
            await producer.stop()
    print(f"{shown} dead-lettered message(s) shown" + (f", {replayed} replayed" if replay else ""), file=sys.stderr)
    return 0


def cmd_wait_for(url: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310 - operator-given URL
                if resp.status == 200:
                    return 0
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.5)
    print(f"{url} not ready after {timeout:.0f}s: {last}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kazpost", description="KazPost operator commands",
                                     epilog="exit codes: 0 done, 1 failed, 2 bad usage or --yes missing")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("init", help="create Kafka topics and database collections")
    pub = sub.add_parser("publish", help="publish ninjs JSON files or directories to the upstream topic")
    pub.add_argument("paths", nargs="+")
    pub.add_argument("--topic", default=None)
    pub.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="progress bar on stderr (default: for 20+ files on a terminal)")
    status = sub.add_parser("status", help="an article across the pipeline (by id or uri)")
    status.add_argument("article", help="article id (16 hex digits) or ninjs uri")
    status.add_argument("--json", action="store_true")
    status.add_argument("--no-gateway", action="store_true", help="do not ask the gateway")
    lag = sub.add_parser("lag", help="consumer lag per group, topic and partition")
    lag.add_argument("--group", action="append", default=None, help="only this group (repeatable)")
    lag.add_argument("--json", action="store_true")
    rebuild = sub.add_parser("rebuild", help="replay a stopped service's input topic from the beginning",
                             description=REBUILD_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    rebuild.add_argument("service", choices=sorted(REBUILDABLE))
    rebuild.add_argument("--group", default=None, help="its consumer group (default: the service's setting)")
    rebuild.add_argument("--fresh", action="store_true", help="empty the collections the service writes first")
    rebuild.add_argument("--yes", action="store_true", help="do it (without: show what would be done)")
    rebuild.add_argument("--force", action="store_true", help="--fresh even if retention removed old messages")
    dlq = sub.add_parser("dlq", help="list dead-lettered messages")
    dlq.add_argument("topic", nargs="?", default="upstream.articles.dlq")
    dlq.add_argument("--limit", type=int, default=50)
    dlq.add_argument("--replay", action="store_true", help="send the listed messages back to their source topic")
    dlq.add_argument("--only", default=None, help="partition:offset[,partition:offset...] to act on")
    wait = sub.add_parser("wait-for", help="wait until an HTTP URL answers 200")
    wait.add_argument("url")
    wait.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args(argv)
    settings: CliSettings | None = None
    try:
        if args.command == "wait-for":
            return cmd_wait_for(args.url, args.timeout)
        settings = CliSettings()
        if args.command == "init":
            return asyncio.run(cmd_init(settings))
        if args.command == "publish":
            return asyncio.run(cmd_publish(settings, args.paths, args.topic, progress=args.progress))
        if args.command == "status":
            return asyncio.run(cmd_status(settings, args.article, as_json=args.json, gateway=not args.no_gateway))
        if args.command == "lag":
            return asyncio.run(cmd_lag(settings, args.group, as_json=args.json))
        if args.command == "rebuild":
            return asyncio.run(cmd_rebuild(settings, args.service, group=args.group, fresh=args.fresh, yes=args.yes,
                                           force=args.force))
        if args.command == "dlq":
            only = None
            if args.only:
                try:
                    only = {(int(p), int(o)) for p, o in (item.split(":") for item in args.only.split(","))}
                except ValueError:
                    print("error: --only takes partition:offset pairs, e.g. 0:12,2:5", file=sys.stderr)
                    return 2
            return asyncio.run(cmd_dlq(settings, args.topic, args.limit, replay=args.replay, offsets=only))
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a clear message and a non-zero exit
        print(f"error: {explain(exc, settings)}", file=sys.stderr)
        return 1
    return 2


def explain(exc: BaseException, settings: CliSettings | None) -> str:
    """A one-line reason, naming the dependency that failed."""
    from aiokafka.errors import KafkaConnectionError, KafkaError
    from pymongo.errors import ConnectionFailure, PyMongoError, ServerSelectionTimeoutError

    if settings is not None:
        if isinstance(exc, KafkaConnectionError) or (isinstance(exc, KafkaError) and "connect" in str(exc).lower()):
            return f"cannot reach Kafka at {settings.kafka.bootstrap_servers}: {exc}"
        if isinstance(exc, ServerSelectionTimeoutError | ConnectionFailure):
            return f"cannot reach the database at {settings.mongo.url}: {str(exc).split(',')[0]}"
        if isinstance(exc, KafkaError):
            return f"Kafka ({settings.kafka.bootstrap_servers}) answered with an error: {exc!r}"
        if isinstance(exc, PyMongoError):
            return f"the database ({settings.mongo.url}) answered with an error: {exc}"
    return repr(exc)


if __name__ == "__main__":
    sys.exit(main())

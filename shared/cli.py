"""``kazpost``: the operator command line.

    kazpost init                      create Kafka topics and database collections (idempotent)
    kazpost publish PATH [PATH ...]   publish ninjs JSON files (or directories of them) upstream
    kazpost dlq TOPIC [--limit N] [--replay] [--only P:O,...]
                                      list dead-lettered messages with their reasons; replay them
    kazpost wait-for URL [--timeout]  wait until an HTTP endpoint answers 200
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

from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.kafka import HEADER_CORRELATION, all_topics, ensure_topics, make_consumer, make_producer
from shared.mongo import database, init_database, make_client
from shared.settings import KafkaSettings, MongoSettings, kafka_field, mongo_field


class CliSettings(BaseSettings):
    """Settings of the operator CLI (env prefix ``KAZPOST_CLI_``)."""

    model_config = SettingsConfigDict(env_prefix="KAZPOST_CLI_", env_nested_delimiter="__", extra="ignore")

    kafka: KafkaSettings = kafka_field()
    mongo: MongoSettings = mongo_field()
    extra_topics: list[str] = ["newsletter.signups"]


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


async def cmd_publish(settings: CliSettings, paths: list[str], topic: str | None) -> int:
    files = ninjs_files(paths)
    producer = make_producer(settings.kafka, "cli")
    await producer.start()
    failures = 0
    sent = []
    try:
        for i, path in enumerate(files, 1):
            data = path.read_bytes()
            try:
                key = str(json.loads(data).get("uri", "")).encode("utf-8") or None
            except (ValueError, AttributeError):
                key = None  # still published: ingestion dead-letters it with the reason
            sent.append(await producer.send(topic or settings.kafka.topic_upstream, value=data, key=key,
                                            headers=[(HEADER_CORRELATION, uuid.uuid4().hex.encode())]))
            if len(files) >= 200 and i % 200 == 0:
                print(f"  {i}/{len(files)} queued", file=sys.stderr)
        for fut in sent:
            try:
                await fut
            except Exception as exc:  # noqa: BLE001 - report every failure, keep going
                failures += 1
                print(f"error: {exc!r}", file=sys.stderr)
    finally:
        await producer.stop()
    print(f"published {len(files) - failures} of {len(files)} items to {topic or settings.kafka.topic_upstream}")
    return 1 if failures else 0


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
    parser = argparse.ArgumentParser(prog="kazpost", description="KazPost operator commands")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("init", help="create Kafka topics and database collections")
    pub = sub.add_parser("publish", help="publish ninjs JSON files or directories to the upstream topic")
    pub.add_argument("paths", nargs="+")
    pub.add_argument("--topic", default=None)
    dlq = sub.add_parser("dlq", help="list dead-lettered messages")
    dlq.add_argument("topic", nargs="?", default="upstream.articles.dlq")
    dlq.add_argument("--limit", type=int, default=50)
    dlq.add_argument("--replay", action="store_true", help="send the listed messages back to their source topic")
    dlq.add_argument("--only", default=None, help="partition:offset[,partition:offset...] to act on")
    wait = sub.add_parser("wait-for", help="wait until an HTTP URL answers 200")
    wait.add_argument("url")
    wait.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args(argv)
    try:
        if args.command == "wait-for":
            return cmd_wait_for(args.url, args.timeout)
        settings = CliSettings()
        if args.command == "init":
            return asyncio.run(cmd_init(settings))
        if args.command == "publish":
            return asyncio.run(cmd_publish(settings, args.paths, args.topic))
        if args.command == "dlq":
            only = None
            if args.only:
                try:
                    only = {(int(p), int(o)) for p, o in (item.split(":") for item in args.only.split(","))}
                except ValueError:
                    print("error: --only takes partition:offset pairs, e.g. 0:12,2:5", file=sys.stderr)
                    return 2
            return asyncio.run(cmd_dlq(settings, args.topic, args.limit, replay=args.replay, offsets=only))
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a clear message and a non-zero exit
        print(f"error: {exc!r}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""``make badinput``: the whole bad-input corpora against the real services; prints the tables.

    python -m tests.badinput.run [--sample] [--strings N] [--bodies N] [--json PATH]

Needs a running broker and database (``make badinput`` starts the test stack first, like
``make test``; the connection comes from the usual ``KAZPOST_*`` settings). Starts ingestion,
storage and linking in this process on topics and a database of this run's own, then runs the
suite (tests/badinput/suite.py) with its own ingestion and gateway. Exit status 1 when any input
was not handled (a 5xx, a crash, a stall, an unsanitised acceptance, a query of another shape).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import pathlib
import sys
import time
import uuid

from aiokafka import AIOKafkaProducer

from services.linking.app import create_worker as create_linking
from services.linking.settings import LinkingSettings
from services.storage.app import create_worker as create_storage
from services.storage.settings import StorageSettings
from services.ingestion.app import create_worker as create_ingestion
from services.ingestion.settings import IngestionSettings
from shared.kafka import all_topics, connection_options, ensure_topics
from shared.logs import configure_logging
from shared.mongo import database, init_database, make_client
from shared.settings import KafkaSettings, LogSettings, MongoSettings
from tests.badinput import corpora, suite
from tests.badinput.channels import wait_for

REPO = pathlib.Path(__file__).resolve().parents[2]


async def main(sizes: suite.Sizes, json_path: pathlib.Path) -> int:
    run_id = uuid.uuid4().hex[:8]
    kafka = suite.prefixed(KafkaSettings(), f"bp{run_id}.").model_copy(update={"client_id_prefix": f"kazpost-bi-{run_id}"})
    mongo = MongoSettings(database=f"kazpost_bi{run_id}")
    print(f"bad-input run {run_id}: broker {kafka.bootstrap_servers}, database {mongo.url} {mongo.database}")
    await asyncio.wait_for(ensure_topics(kafka, all_topics(kafka)), timeout=60)
    client = make_client(mongo, app_name="badinput")
    db = database(client, mongo)
    await init_database(db)
    linking_port = suite.free_port()
    group = f"badinput-{run_id}"
    workers = {
        "ingestion": create_ingestion(IngestionSettings(kafka=kafka, retry=suite.FAST_RETRY, group_id=f"{group}-i", ops_port=None)),
        "storage": create_storage(StorageSettings(kafka=kafka, mongo=mongo, retry=suite.FAST_RETRY, group_id=f"{group}-s", ops_port=None)),
        "linking": create_linking(LinkingSettings(kafka=kafka, mongo=mongo, retry=suite.FAST_RETRY, group_id=f"{group}-l",
                                                  ops_port=linking_port)),
    }
    tasks = {name: asyncio.create_task(w.serve(install_signals=False), name=name) for name, w in workers.items()}
    producer = AIOKafkaProducer(**connection_options(kafka), enable_idempotence=True, acks="all")
    await producer.start()
    started = time.monotonic()
    try:
        async def assigned() -> bool:
            for t in tasks.values():
                if t.done():
                    t.result()
            return all(w.runner.assigned for w in workers.values())
        await wait_for(assigned, timeout=60, what="the services' partitions")
        report = await suite.run(producer=producer, kafka=kafka, mongo=mongo, db=db,
                                 linking_url=f"http://127.0.0.1:{linking_port}", run_id=run_id, sizes=sizes)
    finally:
        await producer.stop()
        for w in workers.values():
            w.stop()
        for t in tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(t, timeout=30)
        await client.drop_database(mongo.database)
        await client.close()
    print()
    print(report.render())
    print(f"\n{'all inputs handled' if report.ok else 'SOME INPUTS WERE NOT HANDLED'} "
          f"({time.monotonic() - started:.0f} s); JSON: {json_path}")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"run": run_id, "sizes": vars(sizes), "ok": report.ok, **report.as_json()},
                                    indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0 if report.ok else 1


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", action="store_true", help="the CI sample instead of the whole corpora")
    parser.add_argument("--strings", type=int, help="BLNS strings and XSS payloads to use, each (default: all)")
    parser.add_argument("--bodies", type=int, help="BLNS strings to send as whole bodies (default: all)")
    parser.add_argument("--json", type=pathlib.Path, default=REPO / "artifacts" / "badinput.json")
    args = parser.parse_args()
    if not corpora.available():
        sys.exit(f"the bad-input corpora are not at {corpora.ROOT}")
    sizes = suite.CI if args.sample else suite.FULL
    sizes = suite.Sizes(strings=args.strings if args.strings is not None else sizes.strings,
                        bodies=args.bodies if args.bodies is not None else sizes.bodies)
    configure_logging(LogSettings(level="ERROR", format="console"), service="badinput")
    sys.exit(asyncio.run(main(sizes, args.json)))


if __name__ == "__main__":
    cli()

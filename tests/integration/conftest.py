"""Fixtures that cross a service boundary: the real broker, the real database, and the
services themselves running in-process against them."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import socket
import warnings
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient

from services.gateway.app import CACHE_LISTENING, create_app
from services.gateway.settings import GatewaySettings
from services.ingestion.app import create_worker as create_ingestion
from services.ingestion.settings import IngestionSettings
from services.linking.app import create_worker as create_linking
from services.linking.settings import LinkingSettings
from services.narration.app import create_worker as create_narration
from services.narration.settings import NarrationSettings
from services.newsletter.app import create_worker as create_newsletter
from services.newsletter.settings import NewsletterSettings
from services.storage.app import create_worker as create_storage
from services.storage.settings import StorageSettings
from shared.kafka import all_topics, ensure_topics
from shared.mongo import database, init_database, make_client
from shared.settings import TOPIC_FIELDS, KafkaSettings, MongoSettings, RetrySettings

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def kafka_settings(run_id: str) -> KafkaSettings:
    base = KafkaSettings()
    prefix = f"t{run_id}."
    return base.model_copy(update={
        name: prefix + getattr(base, name)
        for name in TOPIC_FIELDS
    } | {"client_id_prefix": f"kazpost-test-{run_id}"})


@pytest.fixture(scope="session")
def mongo_settings(run_id: str) -> MongoSettings:
    """A database of this run's own (dropped at the end), so runs never share state."""
    return MongoSettings(database=f"kazpost_t{run_id}")


@pytest.fixture(scope="session")
async def topics(kafka_settings: KafkaSettings) -> list[str]:
    try:
        await asyncio.wait_for(ensure_topics(kafka_settings, all_topics(kafka_settings)), timeout=60)
    except Exception as exc:  # a clear message instead of a wall of retries
        pytest.fail(f"the Kafka broker at {kafka_settings.bootstrap_servers} is not reachable ({exc!r}); "
                    "run the tests with `make test`, which starts it")
    return all_topics(kafka_settings)


@pytest.fixture(scope="session")
async def mongo(mongo_settings: MongoSettings) -> AsyncIterator[AsyncMongoClient]:
    client = make_client(mongo_settings, app_name="tests")
    try:
        await asyncio.wait_for(client.admin.command("ping"), timeout=15)
    except Exception as exc:
        pytest.fail(f"the database at {mongo_settings.url} is not reachable ({exc!r}); run `make test`")
    await init_database(database(client, mongo_settings))
    yield client
    await client.drop_database(mongo_settings.database)
    await client.close()


@pytest.fixture(scope="session")
def db(mongo: AsyncMongoClient, mongo_settings: MongoSettings):
    return database(mongo, mongo_settings)


@pytest.fixture(scope="session")
async def producer(kafka_settings: KafkaSettings, topics) -> AsyncIterator[AIOKafkaProducer]:
    """A plain upstream producer, as a publisher would use."""
    p = AIOKafkaProducer(bootstrap_servers=kafka_settings.bootstrap_servers, enable_idempotence=True, acks="all",
                         max_request_size=kafka_settings.max_request_size)  # items up to 2 MB
    await p.start()
    yield p
    await p.stop()


FAST_RETRY = RetrySettings(max_attempts=30, initial_backoff_s=0.1, max_backoff_s=2.0)


class MailSink:
    """A real SMTP server on loopback (aiosmtpd) that keeps what it receives."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address.lower() in m["X-Envelope-To"].lower()]


@pytest.fixture(scope="session")
def smtp() -> Iterator[tuple[MailSink, int]]:
    sink = MailSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    yield sink, port
    controller.stop()


@dataclass
class Pipeline:
    kafka: KafkaSettings
    base_url: str
    http: aiohttp.ClientSession
    workers: dict
    tasks: dict
    mail: MailSink
    newsletter: NewsletterSettings

    async def get(self, path: str, **kw) -> tuple[int, str, CIMultiDict]:
        async with self.http.get(self.base_url + path, allow_redirects=kw.pop("allow_redirects", True), **kw) as r:
            return r.status, await r.text(), r.headers.copy()

    async def get_json(self, path: str) -> tuple[int, dict]:
        async with self.http.get(self.base_url + path) as r:
            return r.status, await r.json()


@pytest.fixture(scope="session")
async def pipeline(kafka_settings, mongo_settings, topics, mongo, run_id, smtp) -> AsyncIterator[Pipeline]:
    """All the services, wired exactly as in production, running in this event loop (mail goes
    to a real SMTP server on loopback)."""
    group = f"test-{run_id}"
    linking_port, gateway_port = free_port(), free_port()
    newsletter_settings = NewsletterSettings(
        kafka=kafka_settings, mongo=mongo_settings, retry=FAST_RETRY, group_id=f"{group}-newsletter", ops_port=None,
        smtp_host="127.0.0.1", smtp_port=smtp[1], public_base_url=f"http://127.0.0.1:{gateway_port}",
        digest_enabled=False)
    workers = {
        "ingestion": create_ingestion(IngestionSettings(kafka=kafka_settings, retry=FAST_RETRY, group_id=f"{group}-ingestion", ops_port=None)),
        "storage": create_storage(StorageSettings(kafka=kafka_settings, mongo=mongo_settings, retry=FAST_RETRY, group_id=f"{group}-storage", ops_port=None)),
        # Back-links after a second, not the 30 s a busy site coalesces over: the tests wait for them.
        "linking": create_linking(LinkingSettings(kafka=kafka_settings, mongo=mongo_settings, retry=FAST_RETRY, group_id=f"{group}-linking",
                                                  ops_port=linking_port, backlink_delay_s=1.0)),
        "newsletter": create_newsletter(newsletter_settings),
        "narration": create_narration(NarrationSettings(kafka=kafka_settings, mongo=mongo_settings, retry=FAST_RETRY, group_id=f"{group}-narration", ops_port=None)),
    }
    tasks = {name: asyncio.create_task(w.serve(install_signals=False), name=name) for name, w in workers.items()}
    gateway_settings = GatewaySettings(
        kafka=kafka_settings, mongo=mongo_settings, port=gateway_port, ops_port=None,
        public_base_url=f"http://127.0.0.1:{gateway_port}", linking_url=f"http://127.0.0.1:{linking_port}",
        newsletter_rate_limit=1000,
    )
    app = create_app(gateway_settings)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", gateway_port).start()
    http = aiohttp.ClientSession()
    # Wait until every consumer has its partitions, so nothing published now is missed.
    for _ in range(300):
        if all(w.runner.assigned for w in workers.values()) and app[CACHE_LISTENING].is_set():
            break
        if any(t.done() for t in tasks.values()):
            for t in tasks.values():
                if t.done():
                    t.result()
        await asyncio.sleep(0.1)
    else:
        pytest.fail("consumers did not get their partitions in 30 s")
    yield Pipeline(kafka_settings, f"http://127.0.0.1:{gateway_port}", http, workers, tasks, smtp[0], newsletter_settings)
    await http.close()
    await runner.cleanup()
    for w in workers.values():
        w.stop()
    # Graceful shutdown is tested with real processes (tests/integration/test_faults.py); here a
    # service still busy after a minute (a long narration on a loaded machine) is cancelled.
    done, pending = await asyncio.wait(tasks.values(), timeout=60)
    for t in pending:
        warnings.warn(f"the {t.get_name()} service did not stop within 60 s; cancelled", stacklevel=1)
        t.cancel()
    for t in tasks.values():
        with contextlib.suppress(asyncio.CancelledError):
            await t

"""Newsletter service wiring: ``create_worker(settings)`` and ``main()``.

Consumes reader requests (sign-up, confirm, unsubscribe) from the newsletter topic and, in the
same process, sends the daily digest on a schedule.
"""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime

import structlog

from services.newsletter.handlers import handle_request, send_digests
from services.newsletter.mail import Mailer, SmtpMailer
from services.newsletter.settings import NewsletterSettings
from shared.kafka import Publisher
from shared.logs import configure_logging
from shared.mongo import database, init_database, make_client, ping
from shared.runtime import tune_allocator
from shared.worker import Worker

SERVICE = "newsletter"
log = structlog.get_logger(SERVICE)


def create_worker(settings: NewsletterSettings, *, mailer: Mailer | None = None) -> Worker:
    client = make_client(settings.mongo, app_name=SERVICE)
    db = database(client, settings.mongo)
    mailer = mailer or SmtpMailer(settings)

    def make_handler(_: Publisher):
        return functools.partial(handle_request, db=db, mailer=mailer, settings=settings)

    async def ready() -> str | None:
        await ping(db)
        return None

    async def digest_loop() -> None:
        while settings.digest_enabled:
            try:
                await send_digests(db, mailer, settings, datetime.now(UTC))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log.warning("digest_round_failed", error=repr(exc)[:300])
            await asyncio.sleep(settings.digest_check_interval_s)

    return Worker(
        service=SERVICE,
        kafka=settings.kafka,
        retry=settings.retry,
        topics=[settings.kafka.topic_newsletter],
        group_id=settings.group_id,
        make_handler=make_handler,
        ops_host=settings.ops_host,
        ops_port=settings.ops_port,
        ready=ready,
        on_start=lambda: init_database(db),
        on_close=client.close,
        background=[digest_loop],
    )


def main() -> None:
    settings = NewsletterSettings()
    tune_allocator()
    configure_logging(settings.log, service=SERVICE)
    asyncio.run(serve(settings))


async def serve(settings: NewsletterSettings) -> None:
    """Run until SIGTERM/SIGINT (Kafka clients must be created inside the event loop)."""
    await create_worker(settings).serve()

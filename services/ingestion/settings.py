from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings import KafkaSettings, LogSettings, RetrySettings, kafka_field, log_field, retry_field


class IngestionSettings(BaseSettings):
    """Settings of the ingestion service (env prefix ``KAZPOST_INGESTION_``)."""

    model_config = SettingsConfigDict(env_prefix="KAZPOST_INGESTION_", env_nested_delimiter="__", extra="ignore")

    kafka: KafkaSettings = kafka_field()
    log: LogSettings = log_field()
    retry: RetrySettings = retry_field()
    group_id: str = "kazpost-ingestion"
    ops_host: str = "127.0.0.1"
    ops_port: int | None = 8091
    max_message_bytes: int = Field(default=2_000_000, ge=1_000)
    # Items whose versionCreated lies further in the future than this are rejected.
    max_clock_skew_s: int = Field(default=86_400, ge=0)
    # Exact re-deliveries (same id, version and content) remembered to skip re-publishing.
    dedupe_cache_size: int = Field(default=100_000, ge=0)
    words_per_minute: int = Field(default=200, ge=50)

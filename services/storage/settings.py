from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings import (
    KafkaSettings, LogSettings, MongoSettings, RetrySettings, kafka_field, log_field, mongo_field, retry_field,
)


class StorageSettings(BaseSettings):
    """Settings of the storage service (env prefix ``KAZPOST_STORAGE_``)."""

    model_config = SettingsConfigDict(env_prefix="KAZPOST_STORAGE_", env_nested_delimiter="__", extra="ignore")

    kafka: KafkaSettings = kafka_field()
    mongo: MongoSettings = mongo_field()
    log: LogSettings = log_field()
    retry: RetrySettings = retry_field()
    group_id: str = "kazpost-storage"
    ops_host: str = "127.0.0.1"
    ops_port: int | None = 8092
    # Tag fronts maintained per article (the first N tags).
    tag_fronts_per_article: int = Field(default=5, ge=0, le=20)
    history_size: int = Field(default=50, ge=1)

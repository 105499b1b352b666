from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings import (
    KafkaSettings, LogSettings, MongoSettings, RetrySettings, kafka_field, log_field, mongo_field, retry_field,
)


class LinkingSettings(BaseSettings):
    """Settings of the linking service (env prefix ``KAZPOST_LINKING_``)."""

    model_config = SettingsConfigDict(env_prefix="KAZPOST_LINKING_", env_nested_delimiter="__", extra="ignore")

    kafka: KafkaSettings = kafka_field()
    mongo: MongoSettings = mongo_field()
    log: LogSettings = log_field()
    retry: RetrySettings = retry_field()
    group_id: str = "kazpost-linking"
    # Internal HTTP port: /healthz, /readyz, /metrics and the search API the gateway calls.
    ops_host: str = "127.0.0.1"
    ops_port: int | None = 8093
    k: int = Field(default=6, ge=1, le=50, description="related articles per article")
    backlink_limit: int = Field(default=20, ge=0, le=200)
    write_concurrency: int = Field(default=4, ge=1, le=16,
                                   description="related-list writes in flight at once (single-document each)")
    backlink_delay_s: float = Field(
        default=30.0, ge=0, le=300,
        description="an older article's list that new articles change is rewritten this long after the first change, "
                    "once for all of them (0: at once)")
    backlink_chunk: int = Field(
        default=16, ge=1, le=32,
        description="back-links rewritten between two chances for new articles' own lists to be written")
    rebuild_batch_size: int = Field(default=500, ge=10)
    snapshot_path: str | None = Field(
        default=None, description="file of the persisted index; unset: rebuild from the database at start-up")
    snapshot_interval_s: float = Field(default=600.0, ge=5, description="how often the snapshot is rewritten")
    teaser_dir: str | None = Field(
        default=None,
        description="directory of the file the teasers are kept in (unset: the system's temporary directory); "
                    "it should be on disk, not a tmpfs")
    teasers_in_memory: bool = Field(
        default=False, description="keep the teasers in the process instead (about 25 MB at 100k articles)")

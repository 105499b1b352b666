from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings import (
    KafkaSettings, LogSettings, MongoSettings, RetrySettings, kafka_field, log_field, mongo_field, retry_field,
)


class NarrationSettings(BaseSettings):
    """Settings of the narration service (env prefix ``KAZPOST_NARRATION_``)."""

    model_config = SettingsConfigDict(env_prefix="KAZPOST_NARRATION_", env_nested_delimiter="__", extra="ignore")

    kafka: KafkaSettings = kafka_field()
    mongo: MongoSettings = mongo_field()
    log: LogSettings = log_field()
    retry: RetrySettings = retry_field()
    group_id: str = "kazpost-narration"
    ops_host: str = "127.0.0.1"
    ops_port: int | None = 8094
    espeak: str = Field(default="espeak-ng", description="the espeak-ng command (Debian package espeak-ng)")
    opusenc: str = Field(default="opusenc", description="the opusenc command (Debian package opus-tools)")
    voices: dict[str, str] = Field(
        default_factory=lambda: {"kk": "kk", "ru": "ru", "en": "en-gb"},
        description="article language → espeak-ng voice (JSON); other languages get no audio")
    max_chars: int = Field(default=20_000, ge=200, description="narrated text is cut (at a sentence or word) after this many characters")
    words_per_minute: int = Field(default=165, ge=80, le=450, description="speaking rate (espeak-ng -s)")
    paragraph_pause_ms: int = Field(default=600, ge=0, le=5_000, description="silence between paragraphs")
    bitrate_kbps: int = Field(default=24, ge=6, le=128, description="Opus bitrate (mono speech)")
    complexity: int = Field(default=5, ge=0, le=10, description="Opus encoder complexity (CPU against quality)")
    concurrency: int = Field(default=1, ge=1, le=16, description="narrations running at once (partitions in parallel)")
    nice: int = Field(default=10, ge=0, le=19, description="niceness of the espeak-ng and opusenc processes")
    timeout_s: float = Field(default=120.0, gt=0, description="a narration taking longer is killed and counts as failed")
    batch_size: int = Field(default=4, ge=1, le=200, description="messages fetched at once")

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings import KafkaSettings, LogSettings, MongoSettings, kafka_field, log_field, mongo_field


class GatewaySettings(BaseSettings):
    """Settings of the gateway (env prefix ``KAZPOST_GATEWAY_``)."""

    model_config = SettingsConfigDict(env_prefix="KAZPOST_GATEWAY_", env_nested_delimiter="__", extra="ignore")

    kafka: KafkaSettings = kafka_field()
    mongo: MongoSettings = mongo_field()
    log: LogSettings = log_field()
    host: str = "127.0.0.1"
    port: int = 8080
    # Internal listener for /metrics (never on the public port).
    ops_host: str = "127.0.0.1"
    ops_port: int | None = 8090
    public_base_url: str = "http://127.0.0.1:8080"
    linking_url: str = "http://127.0.0.1:8093"
    site_name: str = "KazPost"
    tagline: str = "Kazakhstan News"
    default_language: str = "en"
    page_size: int = Field(default=20, ge=1, le=100)
    # Upper bound on how long a cached document or page lives even without an event.
    cache_ttl_s: float = Field(default=30.0, ge=0)
    cache_max_entries: int = Field(default=20_000, ge=100, description="documents, and as many pages")
    cache_max_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024 * 1024,
        description="bytes of documents and pages together, least recently used dropped first")
    # Listen to Kafka events to drop cache entries as soon as something changes.
    cache_invalidation: bool = True
    newsletter_secret: SecretStr = Field(
        default=SecretStr("dev-only-newsletter-secret"),
        description="checks confirmation/unsubscribe links; the same value as KAZPOST_NEWSLETTER_SECRET")
    newsletter_rate_limit: int = Field(default=5, ge=1, description="sign-ups per client per window")
    newsletter_rate_window_s: float = Field(default=600.0, gt=0)
    newsletter_max_form_bytes: int = Field(default=4096, ge=256)
    client_ip_header: str | None = Field(
        default=None, description="behind a proxy: the header carrying the client address (e.g. X-Forwarded-For)")

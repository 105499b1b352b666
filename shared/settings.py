"""Settings shared by every service.

Each service has exactly one pydantic-settings class (its own env prefix, e.g.
``KAZPOST_INGESTION_``) that nests the shared :class:`KafkaSettings`,
:class:`MongoSettings` and :class:`LogSettings`.  The shared blocks read their own prefixes
(``KAZPOST_KAFKA_``, ``KAZPOST_MONGO_``, ``KAZPOST_LOG_``) so one stack is configured in one
place; a service can still override a nested value with e.g.
``KAZPOST_STORAGE_MONGO__DATABASE``.  No other module reads the environment.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KAZPOST_KAFKA_", extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    client_id_prefix: str = "kazpost"
    # Topic names (the upstream contract and the internal event topics).
    topic_upstream: str = "upstream.articles"
    topic_upstream_dlq: str = "upstream.articles.dlq"
    topic_ingested: str = "articles.ingested"
    topic_ingested_dlq: str = "articles.ingested.dlq"
    topic_stored: str = "articles.stored"
    topic_stored_dlq: str = "articles.stored.dlq"
    topic_linked: str = "articles.linked"
    topic_narrated: str = "articles.narrated"
    topic_newsletter: str = "newsletter.requests"
    topic_newsletter_dlq: str = "newsletter.requests.dlq"
    partitions: int = Field(default=3, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    request_timeout_ms: int = 30_000
    # Producer tuning: never await each send on the hot path; batch instead.
    linger_ms: int = 5
    max_batch_size: int = 262_144
    # An upstream item may be 2 MB; the internal events carry its body as HTML and as text.
    max_request_size: int = 16_777_216
    # Security (every producer, consumer and admin client). PLAINTEXT is the local stack;
    # docker-compose and Kubernetes use SASL_PLAINTEXT (or SASL_SSL) with SCRAM-SHA-512 and one
    # principal per service.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="`SASL_PLAINTEXT` / `SASL_SSL` need the SASL user name and password")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = Field(default=None, description="CA bundle for `SSL` / `SASL_SSL` (default: the system's)")

    @model_validator(mode="after")
    def _sasl_credentials(self) -> "KafkaSettings":
        if self.security_protocol.startswith("SASL_") and not (self.sasl_username and self.sasl_password):
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_username and sasl_password")
        return self


TOPIC_FIELDS: tuple[str, ...] = tuple(name for name in KafkaSettings.model_fields if name.startswith("topic_"))
"""Every topic-name field of :class:`KafkaSettings` (tests prefix them all to get topics of their own)."""


class MongoSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KAZPOST_MONGO_", extra="ignore")

    url: str = "mongodb://127.0.0.1:27017/"
    database: str = "kazpost"
    # Every database call carries this client-side timeout (PyMongo ``timeoutMS``).
    timeout_ms: int = Field(default=5_000, ge=100)
    server_selection_timeout_ms: int = 5_000
    # Credentials kept out of the URL (so a Secret can hold the password alone); when set they
    # override any user in the URL.
    username: str | None = None
    password: SecretStr | None = None
    auth_source: str = Field(default="admin", description="database that holds the user")


class LogSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KAZPOST_LOG_", extra="ignore")

    level: str = "INFO"
    # "auto": JSON lines when stdout is not a terminal, coloured console otherwise.
    format: str = Field(default="auto", pattern="^(auto|json|console)$")


class RetrySettings(BaseSettings):
    """Bounded retries with exponential backoff for transient failures (database or broker)."""

    model_config = SettingsConfigDict(env_prefix="KAZPOST_RETRY_", extra="ignore")

    max_attempts: int = Field(default=10, ge=1)
    initial_backoff_s: float = Field(default=0.2, gt=0)
    max_backoff_s: float = Field(default=10.0, gt=0)


def kafka_field() -> KafkaSettings:
    return Field(default_factory=KafkaSettings)  # type: ignore[return-value]


def mongo_field() -> MongoSettings:
    return Field(default_factory=MongoSettings)  # type: ignore[return-value]


def log_field() -> LogSettings:
    return Field(default_factory=LogSettings)  # type: ignore[return-value]


def retry_field() -> RetrySettings:
    return Field(default_factory=RetrySettings)  # type: ignore[return-value]

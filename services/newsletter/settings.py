from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings import (
    KafkaSettings, LogSettings, MongoSettings, RetrySettings, kafka_field, log_field, mongo_field, retry_field,
)


class NewsletterSettings(BaseSettings):
    """Settings of the newsletter service (env prefix ``KAZPOST_NEWSLETTER_``)."""

    model_config = SettingsConfigDict(env_prefix="KAZPOST_NEWSLETTER_", env_nested_delimiter="__", extra="ignore")

    kafka: KafkaSettings = kafka_field()
    mongo: MongoSettings = mongo_field()
    log: LogSettings = log_field()
    retry: RetrySettings = retry_field()
    group_id: str = "kazpost-newsletter"
    ops_host: str = "127.0.0.1"
    ops_port: int | None = 8095
    secret: SecretStr = Field(
        default=SecretStr("dev-only-newsletter-secret"),
        description="signs confirmation and unsubscribe links; the same value as KAZPOST_GATEWAY_NEWSLETTER_SECRET")
    public_base_url: str = Field(default="http://127.0.0.1:8080", description="where the links in emails point (the gateway)")
    site_name: str = "KazPost"
    mail_from: str = "KazPost <newsletter@kazpost.localhost>"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = Field(default=False, description="upgrade the SMTP connection with STARTTLS")
    smtp_timeout_s: float = Field(default=10.0, gt=0)
    confirm_ttl_s: float = Field(default=48 * 3600, gt=0, description="how long a confirmation link stays valid")
    resend_interval_s: float = Field(
        default=600, ge=0, description="a repeated sign-up re-sends the confirmation at most this often")
    digest_enabled: bool = True
    digest_hour_utc: int = Field(default=6, ge=0, le=23, description="the daily digest goes out from this hour on")
    digest_check_interval_s: float = Field(default=60, gt=0)
    digest_articles: int = Field(default=10, ge=1, le=50)

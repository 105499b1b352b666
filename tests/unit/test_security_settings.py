"""Kafka SASL/SSL and MongoDB credentials: read from the environment, handed to the clients.

The local stack runs PLAINTEXT without credentials (the defaults); docker-compose and Kubernetes
set ``KAZPOST_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT`` with a SCRAM-SHA-512 user per service and a
MongoDB user per service.
"""

from __future__ import annotations

import ssl

import pytest
from pydantic import ValidationError

from services.gateway.settings import GatewaySettings
from services.storage.settings import StorageSettings
from shared.kafka import connection_options, make_consumer, make_producer
from shared.mongo import make_client
from shared.settings import KafkaSettings, MongoSettings


def test_defaults_are_plaintext_without_credentials(monkeypatch):
    monkeypatch.delenv("KAZPOST_KAFKA_BOOTSTRAP_SERVERS", raising=False)  # the test stack sets it
    options = connection_options(KafkaSettings())
    assert options == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}
    assert MongoSettings().username is None and MongoSettings().password is None


async def test_sasl_settings_from_the_environment_reach_every_kind_of_client(monkeypatch):
    monkeypatch.setenv("KAZPOST_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAZPOST_KAFKA_SASL_USERNAME", "storage")
    monkeypatch.setenv("KAZPOST_KAFKA_SASL_PASSWORD", "s3cret-value")
    settings = StorageSettings().kafka
    assert settings.sasl_mechanism == "SCRAM-SHA-512"
    assert "s3cret-value" not in repr(settings) and "s3cret-value" not in str(settings.model_dump())
    options = connection_options(settings)
    assert options["sasl_plain_password"] == "s3cret-value" and options["sasl_plain_username"] == "storage"
    producer = make_producer(settings, "storage")
    consumer = make_consumer(settings, ["t"], group_id="g", client_id="storage")
    for client in (producer.client, consumer._client):
        assert client._security_protocol == "SASL_PLAINTEXT"
        assert client._sasl_mechanism == "SCRAM-SHA-512"
        assert (client._sasl_plain_username, client._sasl_plain_password) == ("storage", "s3cret-value")
    await producer.stop()
    await consumer.stop()


def test_sasl_without_credentials_is_refused_at_start_up():
    with pytest.raises(ValidationError, match="needs sasl_username and sasl_password"):
        KafkaSettings(security_protocol="SASL_SSL", sasl_username="ingestion")


def test_sasl_ssl_gets_a_verifying_tls_context():
    options = connection_options(KafkaSettings(security_protocol="SASL_SSL", sasl_username="u", sasl_password="p"))
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_per_service_override_of_the_shared_block(monkeypatch):
    """One container may hold several services' settings: KAZPOST_<SERVICE>_KAFKA__SASL_USERNAME wins."""
    monkeypatch.setenv("KAZPOST_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAZPOST_KAFKA_SASL_USERNAME", "shared")
    monkeypatch.setenv("KAZPOST_KAFKA_SASL_PASSWORD", "p1")
    monkeypatch.setenv("KAZPOST_GATEWAY_KAFKA__SASL_USERNAME", "gateway")
    monkeypatch.setenv("KAZPOST_GATEWAY_MONGO__USERNAME", "gateway")
    monkeypatch.setenv("KAZPOST_GATEWAY_MONGO__PASSWORD", "p2")
    settings = GatewaySettings()
    assert (settings.kafka.sasl_username, settings.kafka.sasl_password.get_secret_value()) == ("gateway", "p1")
    assert (settings.mongo.username, settings.mongo.password.get_secret_value()) == ("gateway", "p2")


async def test_mongo_credentials_reach_the_client():
    client = make_client(MongoSettings(username="linking", password="pw", auth_source="kazpost"), app_name="t")
    try:
        credentials = client.options.pool_options._credentials
        assert (credentials.username, credentials.password, credentials.source) == ("linking", "pw", "kazpost")
    finally:
        await client.close()
    client = make_client(MongoSettings(), app_name="t")
    try:
        assert client.options.pool_options._credentials is None
    finally:
        await client.close()

"""Test fixtures.

Unit tests need nothing. Integration and end-to-end tests talk to the real Kafka broker and
the real MongoDB-wire database started by ``make test`` (``deploy/local/test.sh``), found
through the usual settings (``KAZPOST_KAFKA_BOOTSTRAP_SERVERS``, ``KAZPOST_MONGO_URL``).
Each test session uses its own topics (a run-id prefix) and consumer groups, and unique
article URIs, so runs never see each other's messages.
"""

from __future__ import annotations

import pathlib
import uuid

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
RUN_ID = uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def run_id() -> str:
    return RUN_ID


@pytest.fixture(scope="session")
def shared_dir() -> pathlib.Path:
    return SHARED


@pytest.fixture(scope="session")
def artifacts_dir() -> pathlib.Path:
    path = REPO / "artifacts"
    path.mkdir(exist_ok=True)
    return path

"""Bad input through the real ingestion and the real gateway (a sample of every corpus; the
whole corpora run with ``make badinput``).

Every message is dead-lettered with a reason or ingested with its content inside the sanitiser's
allow-list, and sentinels published after them come through (no crash, no stall); the gateway
answers every query parameter, path segment and form field without a 5xx, API errors in the
JSON error shape; operator injection cannot change the shape of a database query: every command
the gateway sends is ``find`` with the filter ``{"_id": <string>}``.
"""

from __future__ import annotations

import pytest

from tests.badinput import corpora, suite
from tests.badinput.channels import Tally

pytestmark = pytest.mark.integration

CHANNELS = ["ingestion/body", "ingestion/fields", "gateway/query", "gateway/path", "gateway/form"]


@pytest.fixture(scope="module")
async def report(pipeline, producer, mongo_settings, db, run_id, artifacts_dir) -> suite.Report:
    if not corpora.available():
        pytest.skip(f"the bad-input corpora are not at {corpora.ROOT}")
    linking_url = f"http://127.0.0.1:{pipeline.workers['linking']._ops_port}"
    result = await suite.run(producer=producer, kafka=pipeline.kafka, mongo=mongo_settings, db=db,
                             linking_url=linking_url, run_id=run_id, sizes=suite.CI, log=lambda *_: None)
    (artifacts_dir / "badinput-sample.txt").write_text(result.render() + "\n", encoding="utf-8")
    print("\n" + result.render())
    return result


def tally(report: suite.Report, channel: str) -> Tally:
    return next(t for t in report.tallies if t.channel == channel)


@pytest.mark.parametrize("channel", CHANNELS)
def test_every_input_is_handled(report, channel):
    t = tally(report, channel)
    assert t.inputs > 0
    assert t.problems == []
    assert (t.server_errors, t.crashes) == (0, 0)
    assert t.rejected + t.accepted == t.inputs


def test_no_whole_body_of_the_corpora_passes_as_an_article(report):
    t = tally(report, "ingestion/body")
    # Hostile bodies are checked for their specific reason (``Body.expect``); here: the kinds.
    assert t.accepted == 0 and t.rejected == t.inputs
    kinds = set(t.reasons)
    assert {"invalid JSON", "not UTF-8", "empty message", "message too large"} <= kinds, kinds
    assert any(k.startswith("schema") for k in kinds) and any("object" in k for k in kinds), kinds


def test_fields_take_both_paths(report):
    """Some strings are refused (a uri with control characters, a language that is no tag),
    most are accepted and sanitised: both paths ran, under the same checks."""
    t = tally(report, "ingestion/fields")
    assert t.accepted > t.inputs // 2 and t.rejected > 0
    assert any(k.startswith("schema: uri") for k in t.reasons) and any(k.startswith("schema: language") for k in t.reasons)


def test_gateway_refuses_bad_parameters_and_serves_the_rest(report):
    query = tally(report, "gateway/query")
    assert query.statuses[400] > 0 and query.statuses[200] > 0
    path = tally(report, "gateway/path")
    assert path.statuses[404] > 0 and path.statuses[301] > 0  # old slugs of a real article redirect
    form = tally(report, "gateway/form")
    assert form.statuses[400] > 0 and form.statuses[202] > 0


def test_operator_injection_is_inert(report):
    assert len(report.nosql) >= 15
    failed = [f"{check}: {detail}" for check, passed, detail in report.nosql if not passed]
    assert failed == []


def test_every_gateway_query_is_an_id_lookup(report):
    capture = report.capture
    assert capture.finds > 100  # the channels above did reach the database
    assert capture.problems == []
    assert set(capture.commands) <= {"find", "ping", "endSessions", "hello", "isMaster", "buildInfo"}

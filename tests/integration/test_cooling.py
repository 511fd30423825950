"""A worker run with a candidate model (FUNNEL_MODEL): handoffs carry its version; and the
periodic cooling pass: a hot lead left alone cools, in the leads table, without events."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import orjson
from kafka import KafkaProducer

from funnel.config import default_model_text
from streams.clients import read_all
from tests.integration.conftest import Worker, fresh_settings, query, wait_for


def test_a_hot_lead_that_went_quiet_is_cooled_by_the_periodic_pass(backends, tmp_path):
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(default_model_text().replace('version: "1"', 'version: "7-test"'))
    settings = fresh_settings(backends, tmp_path, cooling_interval=1.0, model=candidate)
    worker = Worker(settings, tmp_path / "worker.log").start()
    try:
        known = f"u-{uuid.uuid4().hex[:8]}"
        lead = f"u-{uuid.uuid4().hex[:8]}"
        then = datetime.now(timezone.utc) - timedelta(days=45)
        producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers(), acks="all")
        for i in range(3):   # 90 points, 45 days ago: hot then, about 32 now
            msg = {"messageId": uuid.uuid4().hex, "type": "track", "event": "Demo Requested",
                   "userId": lead, "timestamp": (then + timedelta(minutes=i)).isoformat()}
            producer.send(settings.topic("events"), key=lead.encode(), value=orjson.dumps(msg))
        for msg in ({"type": "identify", "traits": {"email": "a@acme.io"}},
                    {"type": "track", "event": "Content Downloaded"}):
            msg.update(messageId=uuid.uuid4().hex, userId=known,
                       timestamp=datetime.now(timezone.utc).isoformat())
            producer.send(settings.topic("events"), key=known.encode(), value=orjson.dumps(msg))
        producer.flush()
        producer.close()

        def row():
            rows = query(settings, "SELECT temperature, interest_score, version, events_count "
                                   "FROM leads WHERE lead_id = %s", lead)
            return rows[0] if rows and rows[0][0] != "hot" else None
        temperature, score, version, events = wait_for(row, 90, "the lead to cool", worker)
        assert temperature == "warm" and 25 < score < 40
        assert events == 3 and version == 4      # three events, then one cooling write
        assert query(settings, "SELECT model_version FROM leads WHERE lead_id = %s",
                     lead) == [("7-test",)]
        handoffs = [orjson.loads(r.value) for r in read_all(settings, settings.topic(
            "handoff.mql"), timeout=5) if r.key == known.encode()]
        assert [h["data"]["model"]["version"] for h in handoffs] == ["7-test"]
        cooled = [orjson.loads(r.value) for r in read_all(settings, settings.topic("transitions"),
                                                          timeout=5) if r.key == lead.encode()]
        assert [(c["type"], c["id"], c["data"]["previous_temperature"], c["data"]["temperature"])
                for c in cooled] == [("funnel.lead.cooled", f"{lead}:4", "hot", "warm")]
    finally:
        worker.stop()

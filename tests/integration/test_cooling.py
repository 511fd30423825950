"""The periodic cooling pass: a hot lead left alone cools, in the leads table, without events."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import orjson
from kafka import KafkaProducer

from tests.integration.conftest import Worker, fresh_settings, query, wait_for


def test_a_hot_lead_that_went_quiet_is_cooled_by_the_periodic_pass(backends, tmp_path):
    settings = fresh_settings(backends, tmp_path, cooling_interval=1.0)
    worker = Worker(settings, tmp_path / "worker.log").start()
    try:
        lead = f"u-{uuid.uuid4().hex[:8]}"
        then = datetime.now(timezone.utc) - timedelta(days=45)
        producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers(), acks="all")
        for i in range(3):   # 90 points, 45 days ago: hot then, about 32 now
            msg = {"messageId": uuid.uuid4().hex, "type": "track", "event": "Demo Requested",
                   "userId": lead, "timestamp": (then + timedelta(minutes=i)).isoformat()}
            producer.send(settings.topic("events"), key=lead.encode(), value=orjson.dumps(msg))
        producer.flush()
        producer.close()

        def row():
            rows = query(settings, "SELECT temperature, interest_score, version, events_count "
                                   "FROM leads WHERE lead_id = %s", lead)
            return rows[0] if rows and rows[0][0] != "hot" else None
        temperature, score, version, events = wait_for(row, 90, "the lead to cool", worker)
        assert temperature == "warm" and 25 < score < 40
        assert events == 3 and version == 4      # three events, then one cooling write
    finally:
        worker.stop()

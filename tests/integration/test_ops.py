"""Operations endpoints of a running worker: Prometheus ``/metrics`` (Faust's sensor and
Funnel's counters) and ``/healthz``."""

from __future__ import annotations

import uuid

import orjson
import requests

from tests.bench.cpu import children

from tests.integration.conftest import query, wait_for


def metric(text: str, name: str, **labels: str) -> float:
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def get(url: str) -> requests.Response | None:
    try:
        return requests.get(url, timeout=5)
    except requests.ConnectionError:   # the worker is still starting
        return None


def test_metrics_count_events_dead_letters_handoffs_and_show_faust_and_projection_lag(
        pipeline, producer):
    settings, worker = pipeline
    url = f"http://127.0.0.1:{settings.worker_port}"
    health = wait_for(lambda: (r := get(f"{url}/healthz")) is not None and r.status_code == 200
                      and r.json(), 60, "a healthy worker", worker)
    assert health["database"] == "ok" and health["recovered"] is True
    assert health["assigned_partitions"] > 0 and health["stalled_partitions"] == []
    lead = f"u-{uuid.uuid4().hex[:8]}"
    traits = {"email": "ops@acme.io", "industry": "saas", "employees": 200, "budget": 50000,
              "country": "US", "job_title": "CTO"}
    messages = [{"messageId": uuid.uuid4().hex, "type": t, "userId": lead, "event": e,
                 "timestamp": f"2026-11-20T10:0{i}:00Z", "traits": traits if t == "identify"
                 else {}} for i, (t, e) in enumerate([
                     ("identify", None), ("track", "Content Downloaded"),
                     ("track", "Demo Requested"), ("track", "Trial Started")])]
    for m in messages:
        producer.send(settings.topic("events"), key=lead.encode(), value=orjson.dumps(m))
    producer.send(settings.topic("events"), key=b"junk", value=b"not json")
    producer.flush()
    wait_for(lambda: query(settings, "SELECT stage FROM leads WHERE lead_id = %s", lead)
             == [("sql",)], 60, "the SQL", worker)

    def scraped():
        text = requests.get(f"{url}/metrics", timeout=5).text
        return (metric(text, "funnel_handoffs_total", stage="sql") >= 1
                and metric(text, "funnel_dead_letters_total", reason="invalid_json") >= 1
                and metric(text, "funnel_projection_rows_total") >= 1) and text

    text = wait_for(scraped, 30, "the counters")
    assert metric(text, "funnel_events_total", type="track") >= 3
    assert metric(text, "funnel_events_total", type="identify") >= 1
    assert metric(text, "funnel_handoffs_total", stage="mql") >= 1
    assert "funnel_projection_lag_messages" in text
    assert "funnel_faust_messages_received" in text   # Faust's own sensor, same registry
    # its per-topic and per-stream series (looked up once each: ``web.lean_monitor``) count
    assert metric(text, "funnel_faust_messages_received_per_topic_total",
                  topic=settings.topic("events")) >= len(messages) + 1
    assert any(line.startswith("funnel_faust_total_events_per_stream_total{")
               and float(line.rsplit(" ", 1)[1]) >= len(messages) + 1
               for line in text.splitlines())
    assert health["projection"]["status"] == "ok"     # the projection process's own /healthz


def alive(pid: int) -> bool:
    from pathlib import Path

    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_the_projection_process_is_started_again_when_it_dies_and_ends_with_the_worker(
        pipeline, producer):
    """Last in this module: it kills the module's worker."""
    import os
    import signal

    settings, worker = pipeline
    [first] = wait_for(lambda: children(worker.proc.pid), 30, "the projection process", worker)
    os.kill(first, signal.SIGKILL)
    [second] = wait_for(lambda: (c := children(worker.proc.pid)) and first not in c and c, 60,
                        "a new projection process", worker)
    lead = f"u-{uuid.uuid4().hex[:8]}"
    producer.send(settings.topic("events"), key=lead.encode(), value=orjson.dumps(
        {"messageId": uuid.uuid4().hex, "type": "page", "userId": lead,
         "timestamp": "2026-11-20T10:00:00Z"}))
    producer.flush()
    wait_for(lambda: query(settings, "SELECT count(*) FROM leads WHERE lead_id = %s", lead)
             == [(1,)], 90, "the row, projected by the new process", worker)
    worker.proc.kill()                                  # SIGKILL: no clean-up in the worker
    worker.proc.wait(10)
    wait_for(lambda: not alive(second), 60, "the projection process gone with its worker")


def test_a_worker_with_the_projection_inline_projects_in_its_own_process_and_group(
        backends, tmp_path):
    from streams.clients import worker_lag
    from streams.embedded.runner import wait_caught_up
    from tests.integration.conftest import Worker, fresh_settings

    settings = fresh_settings(backends, tmp_path, projection="inline")
    worker = Worker(settings, tmp_path / "worker.log").start()
    try:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers())
        lead = f"u-{uuid.uuid4().hex[:8]}"
        producer.send(settings.topic("events"), key=lead.encode(), value=orjson.dumps(
            {"messageId": uuid.uuid4().hex, "type": "page", "userId": lead,
             "timestamp": "2026-11-20T10:00:00Z"}))
        producer.flush()
        producer.close()
        wait_for(lambda: query(settings, "SELECT count(*) FROM leads WHERE lead_id = %s", lead)
                 == [(1,)], 90, "the row", worker)
        assert not children(worker.proc.pid)             # no projection process
        assert settings.projection_group == settings.app_id
        assert wait_caught_up(settings, timeout=60, proc=worker.proc)
        assert set(worker_lag(settings)) == {settings.topic(t) for t in (
            "events", "sales-feedback", "identity", "leads", "costs")}
    finally:
        worker.stop()

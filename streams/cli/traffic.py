"""Traffic into the topics: ``publish`` (a JSON Lines file) and ``simulate``."""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from streams.cli.common import console, err
from streams.cli.common import load_settings as _settings
from streams.cli.common import progress_bar as _progress
from streams.cli.group import main
from streams.settings import Settings


def _event_key(msg: dict) -> str | None:
    key = msg.get("userId") or msg.get("anonymousId")
    return str(key) if key not in (None, "") else None


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--topic", default="events", show_default=True,
              help="Topic name without the prefix (events or sales-feedback).")
def publish(file: Path, topic: str) -> None:
    """Publish messages from a JSON Lines FILE (one message per line) to the events topic."""
    from streams.clients import ensure_topics, producer

    settings = _settings()
    if not settings.broker:
        raise click.UsageError("funnel publish needs FUNNEL_BROKER (see 'funnel up')")
    ensure_topics(settings)
    name = settings.topic(topic)
    lines = file.read_bytes().splitlines()
    bad = 0
    p = producer(settings)
    with _progress() as progress:
        task = progress.add_task(f"publishing to {name}", total=len(lines))
        for n, line in enumerate(lines, 1):
            progress.advance(task)
            if not line.strip():
                continue
            try:
                msg = orjson.loads(line)
                if not isinstance(msg, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                err.print(f"[red]{file}:{n}: skipped: {exc}[/red]")
                bad += 1
                continue
            key = msg.get("lead_id") if topic == "sales-feedback" else _event_key(msg)
            p.send(name, key=str(key).encode() if key else None, value=line)
    p.flush()
    p.close()
    console.print(f"published {len(lines) - bad} messages to {name}; {bad} bad lines skipped")


def publish_traffic(settings: Settings, leads: int, days: int, seed: int,
                     wait=None) -> tuple[int, int]:
    from streams.simulate import generate
    from streams.clients import ensure_topics, producer

    ensure_topics(settings)
    traffic = generate(leads, days, seed)
    events_topic, feedback_topic = settings.topic("events"), settings.topic("sales-feedback")
    p = producer(settings)
    total = len(traffic.events) + len(traffic.malformed) + len(traffic.commands)
    with _progress() as progress:
        task = progress.add_task(f"simulating {leads} leads over {days} days", total=total)
        for key, msg in traffic.events:
            p.send(events_topic, key=key.encode(), value=orjson.dumps(msg))
            progress.advance(task)
        for key, raw in traffic.malformed:
            p.send(events_topic, key=key.encode() if key else None, value=raw)
            progress.advance(task)
        p.flush()
        if wait is not None:
            progress.update(task, description="waiting for the pipeline before sales feedback")
            wait()
            progress.update(task, description=f"simulating {leads} leads over {days} days")
        for key, cmd in traffic.commands:
            p.send(feedback_topic, key=key.encode(), value=orjson.dumps(cmd))
            progress.advance(task)
        p.flush()
    p.close()
    return len(traffic.events) + len(traffic.malformed), len(traffic.commands)


@main.command()
@click.option("--leads", default=500, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 3650))
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the traffic to this JSON Lines file instead of publishing it.")
def simulate(leads: int, days: int, seed: int, out: Path | None) -> None:
    """Publish realistic synthetic traffic to FUNNEL_BROKER: events first, then sales feedback."""
    from streams.embedded.runner import wait_caught_up

    if out is not None:
        from streams.simulate import generate

        traffic = generate(leads, days, seed)
        with out.open("wb") as f:
            for _, msg in traffic.events:
                f.write(orjson.dumps(msg) + b"\n")
            for _, raw in traffic.malformed:
                f.write(raw + b"\n")
            for _, cmd in traffic.commands:
                f.write(orjson.dumps(cmd) + b"\n")
        console.print(f"wrote {len(traffic.events)} events, {len(traffic.malformed)} malformed "
                      f"lines and {len(traffic.commands)} sales commands to {out}")
        return
    settings = _settings()
    if not settings.broker:
        raise click.UsageError("funnel simulate needs FUNNEL_BROKER (see 'funnel up')")
    events, commands = publish_traffic(
        settings, leads, days, seed, wait=lambda: wait_caught_up(settings, timeout=120))
    console.print(f"published {events} events and {commands} sales commands")

"""The framework's ceiling: a Faust agent that does nothing with each message but acknowledge
it (``noack`` stream, ``ack`` each), on the same broker and bytes as the worker. Run by the
pipeline bench as ``python -m tests.bench.noop BROKER TOPIC GROUP PARTITIONS [--deliver]``;
``--deliver``: with the worker's hand-over of fetched messages (``streams.worker.faust_deliver``)
instead of stock Faust's."""

from __future__ import annotations

import logging
import sys

import faust


def main(broker: str, topic_name: str, group: str, partitions: int, deliver: bool) -> None:
    if deliver:
        from streams.worker.faust_deliver import deliver_without_tasks

        deliver_without_tasks()
    app = faust.App(group, broker=broker, store="memory://", web_enabled=False,
                    broker_session_timeout=6, broker_heartbeat_interval=1.0,
                    broker_commit_interval=1.0, consumer_auto_offset_reset="earliest",
                    topic_partitions=partitions, autodiscover=False)
    topic = app.topic(topic_name, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw", partitions=partitions)

    @app.agent(topic, name="noop", concurrency=1)
    async def noop(stream: faust.StreamT) -> None:
        manual = stream.noack()
        async for event in manual.events():
            await manual.ack(event)

    logging.getLogger("faust").setLevel(logging.WARNING)
    worker = faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)
    worker.spinner = None   # as the worker's (``streams.embedded.runner.run_worker``)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), "--deliver" in sys.argv[5:])

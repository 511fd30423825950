"""The framework's ceiling: a Faust agent that does nothing with each message but acknowledge
it (``noack`` stream, ``ack`` each), on the same broker and bytes as the worker. Run by the
pipeline bench as ``python -m tests.bench.noop BROKER TOPIC GROUP PARTITIONS [--deliver]``;
``--deliver``: the worker's path instead of stock Faust's — its hand-over of fetched messages
(``streams.worker.faust_deliver``, a poll's run at a time) into an inbox taken in batches (``streams.worker.faust_inbox``)
instead of a stream, each message acknowledged."""

from __future__ import annotations

import logging
import sys

import faust


def main(broker: str, topic_name: str, group: str, partitions: int, deliver: bool) -> None:
    if deliver:
        from streams.worker.faust_deliver import deliver_in_batches, deliver_without_tasks

        deliver_without_tasks()
        deliver_in_batches()
    app = faust.App(group, broker=broker, store="memory://", web_enabled=False,
                    broker_session_timeout=6, broker_heartbeat_interval=1.0,
                    broker_commit_interval=1.0, consumer_auto_offset_reset="earliest",
                    topic_partitions=partitions, autodiscover=False)
    topic = app.topic(topic_name, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw", partitions=partitions)

    if deliver:
        from streams.worker.faust_inbox import Inbox

        inbox = Inbox(app, {topic_name}, app.conf.stream_buffer_maxsize)

        @app.agent(topic, name="noop", concurrency=1)
        async def noop_inbox(stream: faust.StreamT) -> None:
            inbox.subscribe(stream)
            while True:
                await inbox.ack_all(await inbox.take(500))
    else:
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

"""``python -m tests.chaos``: chaos runs in a row on the embedded stack (or FUNNEL_BROKER /
FUNNEL_DATABASE_URL), each with its own topics and schema; prints one line a run and exits 1 if
any run found a problem.

    python -m tests.chaos --runs 20 --kills 5                 # kill -9 ×5, 20 runs in a row
    python -m tests.chaos --runs 3 --workers 2 --kills 3      # two workers, one killed at a time
    python -m tests.chaos --runs 1 --hostile 10000 --kills 0  # 10,000 hostile messages
    python -m tests.chaos --runs 1 --pg-outage 30 --kills 0   # PostgreSQL down 30 s
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from pydantic import SecretStr

from streams.embedded.stack import EmbeddedBroker, EmbeddedPostgres
from streams.settings import Settings
from tests.chaos.harness import Plan, run


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--hostile", type=int, default=0)
    ap.add_argument("--leads", type=int, default=250)
    ap.add_argument("--pg-outage", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="funnel-chaos-"))   # kept: the workers' logs
        broker = os.environ.get("FUNNEL_BROKER")
        db = os.environ.get("FUNNEL_DATABASE_URL")
        pg = None
        if broker is None:
            b = EmbeddedBroker(tmp, durable=False).start()
            stack.callback(b.stop)
            broker = b.url
        if db is None:
            pg = EmbeddedPostgres(tmp).start()
            stack.callback(lambda: pg.stop())
            db = pg.url

        def outage(seconds: float) -> None:
            if pg is None:
                print("  (no PostgreSQL outage: FUNNEL_DATABASE_URL is not ours to stop)")
                return
            pg.stop()
            time.sleep(seconds)
            pg.start()
        failed = 0
        for i in range(args.runs):
            tag = uuid.uuid4().hex[:10]
            settings = Settings(broker=broker, database_url=SecretStr(db), data_dir=tmp / tag,
                                topic_prefix=f"c{tag}.", db_schema=f"c_{tag}", partitions=4,
                                log_level="info", cooling_interval=0, timer_interval=0,
                                flush_max_events=200)
            plan = Plan(leads=args.leads, seed=args.seed + i, hostile=args.hostile,
                        kills=args.kills, workers=args.workers, pg_outage=args.pg_outage)
            out = run(settings, tmp / tag, plan, outage)
            failed += bool(out.problems)
            print(f"run {i + 1}/{args.runs}: {'FAILED' if out.problems else 'ok'}  "
                  f"{out.leads} leads, {out.handoffs} handoffs, {out.dead_letters} dead letters, "
                  f"{out.kills} kills, {out.seconds:.0f} s", flush=True)
            for p in out.problems[:10]:
                print("   ", p)
        print(f"{args.runs - failed} of {args.runs} runs held; logs in {tmp}")
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

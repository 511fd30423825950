"""``make bench``: figures printed, never asserted.

    python -m tests.bench                    # core, learn, collector, pipeline (16,000 leads)
    python -m tests.bench --core-only        # the pure core and funnel learn only
    python -m tests.bench --pipeline-only --leads 1000000 --no-ceilings   # the scale run
"""

from __future__ import annotations

import argparse

from tests.bench.pipeline import bench_pipeline
from tests.bench.sections import bench_collector, bench_core, bench_learn


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m tests.bench")
    ap.add_argument("--core-only", action="store_true")
    ap.add_argument("--pipeline-only", action="store_true")
    ap.add_argument("--leads", type=int, default=16000, help="simulated leads in the pipeline run")
    ap.add_argument("--storage", choices=("memory", "disk"), default="memory",
                    help="the embedded broker's engine for the pipeline run")
    ap.add_argument("--no-ceilings", action="store_true",
                    help="the pipeline run without the Faust no-op agent and the worker's own "
                         "code (the scale run: they would add ~40 minutes at a million leads)")
    args = ap.parse_args()
    if not args.pipeline_only:
        bench_core()
        bench_learn()
    if not args.core_only:
        if not args.pipeline_only:
            bench_collector()
        bench_pipeline(args.leads, args.storage, ceilings=not args.no_ceilings)


if __name__ == "__main__":
    main()

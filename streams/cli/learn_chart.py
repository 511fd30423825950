"""The ``--chart`` of ``funnel learn``: cumulative gains and calibration on the holdout."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def draw(curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], path: Path) -> None:
    """Two panels, each model a line: the share of positives found in the top x% (gains, with
    the random line), and observed against predicted rate by decile (calibration)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (gains, calib) = plt.subplots(1, 2, figsize=(10, 4.2))
    for name, (score, p, y) in curves.items():
        order = np.argsort(-score, kind="stable")
        found = np.concatenate([[0], np.cumsum(y[order]) / max(y.sum(), 1)])
        gains.plot(np.linspace(0, 1, len(found)), found, label=name)
        parts = np.array_split(np.argsort(p, kind="stable"), min(10, len(y)))
        calib.plot([p[i].mean() for i in parts], [y[i].mean() for i in parts], "o-", label=name)
    gains.plot([0, 1], [0, 1], "--", color="grey", label="random")
    gains.set(title="cumulative gains (holdout)", xlabel="share of leads, best scored first",
              ylabel="share of positive outcomes found")
    calib.plot([0, 1], [0, 1], "--", color="grey", label="perfect")
    calib.set(title="calibration by decile (holdout)", xlabel="predicted rate",
              ylabel="observed rate")
    for ax in (gains, calib):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)

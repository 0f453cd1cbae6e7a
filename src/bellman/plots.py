"""Learning curves as PNG: one panel per metric, one line per run.

`plot_runs` reads each run's metrics.csv; the first panel is `episode_return_mean` against the
env step, further panels show whichever of the algorithm's diagnostics the runs logged (the
Bellman residual of the tabular methods on a log scale, losses of the deep ones: DQN's TD loss,
the policy and value losses of the actor-critics).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from bellman.checkpoint import atomic_write
from bellman.errors import CheckpointError, ConfigError

#: Metrics drawn when present, in this order; the ones in LOG_SCALE on a log axis.
PANELS = (
    "episode_return_mean",
    "eval_return_mean",
    "bellman_residual",
    "bellman_residual_mean",
    "loss",
    "policy_loss",
    "value_loss",
)
LOG_SCALE = {"bellman_residual", "bellman_residual_mean"}


def read_metrics(run_dir: Path) -> dict[str, list[float]]:
    """Columns of a run's metrics.csv as float lists (missing values as NaN)."""
    path = Path(run_dir) / "metrics.csv"
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        raise CheckpointError(f"'{run_dir}' has no metrics.csv (is it a run directory?)") from None
    columns: dict[str, list[float]] = {}
    try:
        for row in rows:
            for key, text in row.items():
                value = float(text) if text not in ("", None) else math.nan
                columns.setdefault(key, []).append(value)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"'{path}' is corrupt: {error}") from None
    if "step" not in columns:
        raise CheckpointError(f"'{path}' has no step column")
    return columns


def plot_runs(run_dirs: list[Path], out: Path, metrics: tuple[str, ...] | None = None) -> Path:
    """Draw the learning curves of one or more runs into one PNG (written atomically)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = {Path(run_dir): read_metrics(run_dir) for run_dir in run_dirs}
    if not Path(out).parent.is_dir():
        raise ConfigError(f"cannot write '{out}': directory '{Path(out).parent}' does not exist")
    wanted = metrics or PANELS
    panels = [
        name
        for name in wanted
        if any(any(map(math.isfinite, columns.get(name, []))) for columns in data.values())
    ]
    if not panels:
        raise CheckpointError(f"none of the runs logged {', '.join(wanted)} yet")
    figure, axes = plt.subplots(
        len(panels), 1, figsize=(8, 2.8 * len(panels)), sharex=True, squeeze=False
    )
    for axis, name in zip(axes[:, 0], panels, strict=True):
        for run_dir, columns in data.items():
            if name in columns:
                points = [(x, y) for x, y in zip(columns["step"], columns[name], strict=True)
                          if math.isfinite(y)]  # fmt: skip
                if points:
                    xs, ys = zip(*points, strict=True)
                    axis.plot(
                        xs,
                        ys,
                        label=run_dir.name,
                        linewidth=1.2,
                        marker="." if len(xs) < 40 else None,
                    )
        axis.set_ylabel(name)
        positive = any(v > 0 for c in data.values() for v in c.get(name, []) if v == v)
        if name in LOG_SCALE and positive:
            axis.set_yscale("log")
        axis.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    axes[-1, 0].set_xlabel("env steps")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    atomic_write(Path(out), buffer.getvalue())
    return Path(out)

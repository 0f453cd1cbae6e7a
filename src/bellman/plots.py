"""Learning curves as PNG: one panel per metric, one line per run.

`plot_runs` reads each run's metrics.csv and draws, in the order of `PANELS`, whichever of these
metrics the runs logged: the return (`episode_return_mean`, then the evaluation's), AlphaZero's
Elo, the language-model steps' measures (the true and learned reward and the KL to the SFT model
of RLHF, pretraining's held-out perplexity on a log scale, the held-out pairwise accuracy of the
reward model and DPO, the held-out response loss of SFT), the Bellman residual of the tabular
methods on a log scale, and the losses of the deep methods (DQN's TD loss, the policy and value
losses of the actor-critics). The x axis is the run's step: env steps, gradient steps of a
language-model run, PPO iterations of `lm ppo`.
"""

from __future__ import annotations

import csv
import math
import tomllib
from pathlib import Path

from bellman.checkpoint import atomic_write
from bellman.errors import CheckpointError, ConfigError

#: Metrics drawn when present, in this order; the ones in LOG_SCALE on a log axis.
PANELS = (
    "episode_return_mean",
    "eval_return_mean",
    "elo",  # AlphaZero: the Elo of each generation (random play = 0)
    "eval_reward_true",  # lm ppo: the true judge on held-out prompts
    "reward_true",  # lm ppo: the true judge on the rollout
    "reward_learned",  # lm ppo: the reward model's score of the rollout
    "kl",  # lm ppo: KL to the SFT model, nats per response
    "held_out_perplexity",  # lm pretrain (and lm ppo: drift from the corpus)
    "held_out_accuracy",  # lm reward / dpo: held-out pairs ranked right
    "held_out_loss",  # lm sft: response loss; lm reward / dpo: preference loss
    "bellman_residual",
    "bellman_residual_mean",
    "loss",
    "policy_loss",
    "value_loss",
)
LOG_SCALE = {"bellman_residual", "bellman_residual_mean", "held_out_perplexity"}
#: A panel left out for a run that logs the metric it maps to (the same number, another scale).
SHOWN_AS = {"held_out_loss": "held_out_perplexity"}
#: The x axis of runs whose step is not an env step, by the algorithm of their config.toml.
STEP_NAMES = {
    "lm-pretrain": "gradient steps",
    "lm-sft": "gradient steps",
    "lm-reward": "gradient steps",
    "lm-dpo": "gradient steps",
    "lm-ppo": "PPO iterations",
}


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


def _algo(run_dir: Path) -> str:
    """The algorithm of a run's config.toml ("" when it cannot be read: the plot still works)."""
    try:
        with open(Path(run_dir) / "config.toml", "rb") as handle:
            return str(tomllib.load(handle).get("algo", ""))
    except (OSError, tomllib.TOMLDecodeError):
        return ""


def _logged(columns: dict[str, list[float]], name: str) -> bool:
    return any(map(math.isfinite, columns.get(name, [])))


def _panels(data: dict[Path, dict[str, list[float]]], wanted: tuple[str, ...]) -> list[str]:
    """The wanted metrics some run logged, less those every such run also logs in another
    form (`SHOWN_AS`)."""
    panels = []
    for name in wanted:
        runs = [columns for columns in data.values() if _logged(columns, name)]
        shown_as = SHOWN_AS.get(name)
        if shown_as in wanted and runs and all(_logged(columns, shown_as) for columns in runs):
            continue
        if runs:
            panels.append(name)
    return panels


def plot_runs(run_dirs: list[Path], out: Path, metrics: tuple[str, ...] | None = None) -> Path:
    """Draw the learning curves of one or more runs into one PNG (written atomically)."""
    import io

    # a Figure of its own, not pyplot's: no global figure registry, no GUI backend to choose,
    # and a third of a second less to import at the end of every run
    from matplotlib.figure import Figure

    data = {Path(run_dir): read_metrics(run_dir) for run_dir in run_dirs}
    if not Path(out).parent.is_dir():
        raise ConfigError(f"cannot write '{out}': directory '{Path(out).parent}' does not exist")
    wanted = metrics or PANELS
    panels = _panels(data, wanted)
    if not panels:
        raise CheckpointError(f"none of the runs logged {', '.join(wanted)} yet")
    figure = Figure(figsize=(8, 2.8 * len(panels)))
    axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False)
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
    step_names = {STEP_NAMES.get(_algo(run_dir), "env steps") for run_dir in data}
    axes[-1, 0].set_xlabel(" / ".join(sorted(step_names)))
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    atomic_write(Path(out), buffer.getvalue())
    return Path(out)

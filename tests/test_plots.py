"""Which panels `bellman.plots` draws for each kind of run, and that it draws them."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from bellman import plots
from bellman.errors import CheckpointError

NAN = math.nan


def _run(path: Path, algo: str, rows: list[dict]) -> Path:
    """A run directory with just config.toml and metrics.csv (what plotting reads)."""
    path.mkdir()
    (path / "config.toml").write_text(f'algo = "{algo}"\n')
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path / "metrics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["step", *columns])
        writer.writeheader()
        for step, row in enumerate(rows):
            writer.writerow({"step": step, **{k: "" if v != v else v for k, v in row.items()}})
    return path


def _panels(*run_dirs: Path) -> list[str]:
    return plots._panels({d: plots.read_metrics(d) for d in run_dirs}, plots.PANELS)


@pytest.mark.parametrize(
    ("algo", "row", "panels"),
    [
        ("q-learning", {"episode_return_mean": 1.0, "bellman_residual": 0.5, "epsilon": 0.1},
         ["episode_return_mean", "bellman_residual"]),
        ("dqn", {"episode_return_mean": 9.0, "eval_return_mean": 10.0, "loss": 0.1,
                 "q_mean": 2.0}, ["episode_return_mean", "eval_return_mean", "loss"]),
        ("ppo", {"episode_return_mean": 9.0, "policy_loss": 0.1, "value_loss": 0.2,
                 "approx_kl": 0.01, "kl_beta": 1.0},
         ["episode_return_mean", "policy_loss", "value_loss"]),
        ("alphazero", {"episode_return_mean": 0.2, "elo": 40.0, "loss": 2.0, "policy_loss": 1.5,
                       "value_loss": 0.5}, ["episode_return_mean", "elo", "loss", "policy_loss",
                                            "value_loss"]),
        ("lm-pretrain", {"loss": 5.0, "held_out_loss": 5.1, "held_out_perplexity": 164.0},
         ["held_out_perplexity", "loss"]),
        ("lm-sft", {"loss": 4.0, "held_out_loss": 4.2}, ["held_out_loss", "loss"]),
        ("lm-reward", {"loss": 0.6, "held_out_loss": 0.65, "held_out_accuracy": 0.7},
         ["held_out_accuracy", "held_out_loss", "loss"]),
        ("lm-dpo", {"loss": 0.6, "held_out_loss": 0.65, "held_out_accuracy": 0.6,
                    "reward_margin": 0.1}, ["held_out_accuracy", "held_out_loss", "loss"]),
        ("lm-ppo", {"reward": 1.0, "reward_learned": 1.0, "reward_true": 0.2, "kl": 3.0,
                    "eval_reward_true": 0.3, "eval_kl": 2.0, "held_out_perplexity": 150.0,
                    "policy_loss": 0.0, "value_loss": 0.1},
         ["eval_reward_true", "reward_true", "reward_learned", "kl", "held_out_perplexity",
          "policy_loss", "value_loss"]),
    ],
)  # fmt: skip
def test_each_kind_of_run_gets_its_panels(tmp_path, algo, row, panels):
    run_dir = _run(tmp_path / "run", algo, [row, row])
    assert _panels(run_dir) == panels
    out = plots.plot_runs([run_dir], tmp_path / "plot.png")
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_the_panels_of_the_earlier_algorithms_keep_their_order():
    earlier = ("episode_return_mean", "eval_return_mean", "bellman_residual",
               "bellman_residual_mean", "loss", "policy_loss", "value_loss")  # fmt: skip
    assert tuple(name for name in plots.PANELS if name in earlier) == earlier


def test_a_loss_shown_as_perplexity_stays_for_a_run_without_perplexity(tmp_path):
    pretrain = _run(tmp_path / "pt", "lm-pretrain",
                    [{"held_out_loss": 5.0, "held_out_perplexity": 148.4}])  # fmt: skip
    sft = _run(tmp_path / "sft", "lm-sft", [{"held_out_loss": 4.0}])
    assert _panels(pretrain) == ["held_out_perplexity"]
    assert _panels(pretrain, sft) == ["held_out_perplexity", "held_out_loss"]


def test_the_x_axis_names_the_step(tmp_path):
    assert plots._algo(_run(tmp_path / "a", "lm-ppo", [{"kl": 1.0}])) == "lm-ppo"
    assert plots.STEP_NAMES["lm-ppo"] == "PPO iterations"
    (tmp_path / "b").mkdir()
    assert plots._algo(tmp_path / "b") == ""  # no config.toml: still plotted, as env steps


def test_a_run_with_only_nan_rows_has_no_panels(tmp_path):
    run_dir = _run(tmp_path / "run", "lm-ppo", [{"kl": NAN, "reward_true": NAN}])
    with pytest.raises(CheckpointError, match="none of the runs logged"):
        plots.plot_runs([run_dir], tmp_path / "plot.png")

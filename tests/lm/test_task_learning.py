"""A short seeded PPO run on each RLHF use case of `lm/tasks.py` raises its judge's true score on
the held-out prompts (the fifth of each task's prompts that has no demonstration).

One tiny "SFT model" serves all four tasks: a 1-block GPT (width 48) trained for a few seconds
on the tasks' demonstrations (prompt and response, EOS after each), so it answers each task's
prompts in the demonstrations' mix of good and bad responses; PPO against the task's judge then
has to find the good ones.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from bellman.lm import rlhf_ppo, runs, tasks
from tests.lm.conftest import train_tiny_sft

torch.set_num_threads(1)


def build_task_world(root: Path) -> Path:
    """The four tasks' files under ROOT/NAME, ROOT/corpus.txt (every demonstration, the PPO
    runs' corpus) and ROOT/sft (the tiny model, a transformers folder)."""
    documents = []
    for name in tasks.TASKS:
        tasks.write_task(name, root / name)
        documents += [p + r for p, r in tasks.build_task(name)["demos"]]
    (root / "corpus.txt").write_text("\n\n".join(documents) + "\n")
    train_tiny_sft(documents, root / "sft", np.random.default_rng(0), vocab_size=512, width=48,
                   steps=300)  # fmt: skip
    return root


@pytest.fixture(scope="module")
def task_world(tmp_path_factory) -> Path:
    return build_task_world(tmp_path_factory.mktemp("tasks"))


#: PPO settings: 40 iterations of 16 responses, the true score measured at the start and end.
FAST = [
    "steps=40", "batch_prompts=16", "minibatch_size=8", "ppo_epochs=2", "learning_rate=1e-3",
    "kl_coef=0.02", "adaptive_kl=false", "eval_every=40", "eval_tokens=512", "device=cpu",
    "log_every=10", "value_init=sft",
]  # fmt: skip


def run_task(root: Path, name: str, out: Path, *sets: str) -> list[dict[str, str]]:
    judge = tasks.build_task(name)["judge"]
    overrides = [f"base={root / 'sft'}", f"prompts={root / name / 'prompts.jsonl'}",
                 f"judge={judge}", *FAST, *sets]  # fmt: skip
    config = runs.resolve_config(rlhf_ppo.ALGO, rlhf_ppo.Config, str(root / "corpus.txt"),
                                 overrides=overrides)  # fmt: skip
    run = runs.create_run(rlhf_ppo.ALGO, config, name, out, quiet=True)
    rlhf_ppo.train(config, run, rlhf_ppo.prepare(config))
    with open(out / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize(
    ("name", "sets", "gain", "floor"),
    [
        ("hallucination", ["max_new_tokens=8"], 1.0, -1.0),  # -2.62 -> -0.14: bluffs -> abstains
        # 0.69 -> 0.92 on one machine, 0.69 -> 0.83 on another CPU (float rounding differs)
        ("safety", ["max_new_tokens=12", "learning_rate=5e-4"], 0.1, 0.8),
        ("detoxification", ["max_new_tokens=10", "steps=30"], 0.3, -0.2),  # -1.17 -> 0.00
        ("quality", ["max_new_tokens=20"], 0.1, 0.75),  # 0.77 -> 0.92
    ],
)
def test_ppo_raises_each_task_s_true_score_on_held_out_prompts(task_world, tmp_path, name,
                                                              sets, gain, floor):  # fmt: skip
    rows = run_task(task_world, name, tmp_path / "run", *sets)
    before, after = float(rows[0]["eval_reward_true"]), float(rows[-1]["eval_reward_true"])
    print(f"{name}: held-out true score {before:.3f} -> {after:.3f}, "
          f"KL {float(rows[-1]['eval_kl']):.2f}")  # fmt: skip
    assert float(rows[0]["eval_kl"]) == 0.0
    assert after > before + gain and after > floor, rows


def test_labelling_the_hallucination_task_ranks_its_responses_by_the_judge(task_world):
    """`lm label --judge hallucination` on the task's own questions, with a model that has read
    its demonstrations: rankings best first, each score the judge's own."""
    from bellman.lm.data import read_prompts
    from bellman.lm.reward_model import label_comparisons
    from bellman.lm.rewards import hallucination

    prompts = [p for p, _ in read_prompts(task_world / "hallucination" / "prompts.jsonl")][:12]
    lm = runs.load_lm(task_world / "sft")
    records, skipped = label_comparisons(lm, prompts, 4, "hallucination", max_new_tokens=12)
    assert len(records) >= 3 and len(records) + skipped == 12, (len(records), skipped)
    for record in records:
        assert record["scores"] == [hallucination(record["prompt"], r)
                                    for r in record["responses"]]  # fmt: skip
        assert record["scores"] == sorted(record["scores"], reverse=True)
        assert record["scores"][0] > record["scores"][-1]

"""DPO: the loss by hand, log 2 at step 0, every parameter trained, learning on judge-ranked
responses (the preferred behaviour rises), the CLI's paths."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from bellman import checkpoint
from bellman.lm import dpo, runs
from bellman.lm.data import write_jsonl
from bellman.lm.reward_model import TokenizedComparison, comparison_pairs, label_comparisons
from bellman.lm.rewards import sentiment
from bellman.lm.sampling import sample
from tests.conftest import assert_user_error, run_in_one_process
from tests.lm.test_rlhf_ppo import word_world  # noqa: F401 (the shared fixture)

torch.set_num_threads(1)


def _nll_sigmoid(x: float) -> float:
    return -math.log(1 / (1 + math.exp(-x)))


def test_dpo_loss_by_hand():
    # one pair: policy/reference sequence log-probs of y_w and y_l
    pi_w, pi_l, ref_w, ref_l, beta = -4.0, -6.0, -5.0, -5.5, 0.1
    loss = dpo.dpo_loss(torch.tensor([pi_w, pi_l]), torch.tensor([ref_w, ref_l]),
                        torch.tensor([0]), torch.tensor([1]), torch.tensor([0]), beta)  # fmt: skip
    expected = _nll_sigmoid(beta * ((pi_w - ref_w) - (pi_l - ref_l)))  # -log sigmoid(0.1 * -0.5)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # K = 3 then K = 2: the mean over each prompt's pairs, then over the prompts
    ranked = [TokenizedComparison([1], [[2], [3], [4]], None),
              TokenizedComparison([1], [[5], [6]], None)]  # fmt: skip
    winners, losers, prompts = comparison_pairs(ranked)
    policy = torch.tensor([-1.0, -2.0, -3.0, -4.0, -2.0])
    ref = torch.tensor([-1.5, -1.0, -3.0, -3.0, -3.0])
    r = (0.5 * (policy - ref)).tolist()
    expected = (_nll_sigmoid(r[0] - r[1]) + _nll_sigmoid(r[0] - r[2]) + _nll_sigmoid(r[1] - r[2])
                ) / 3 / 2 + _nll_sigmoid(r[3] - r[4]) / 2  # fmt: skip
    loss = dpo.dpo_loss(policy, ref, winners, losers, prompts, 0.5)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # policy == reference: every margin 0, the loss log 2
    same = dpo.dpo_loss(policy, policy.clone(), winners, losers, prompts, 0.5)
    assert same.item() == pytest.approx(math.log(2), rel=1e-7)


@pytest.fixture(scope="module")
def ranked(word_world):  # noqa: F811
    """Judge-ranked responses (K = 4) of the word-world SFT model to its prompts."""
    lm = runs.load_lm(word_world / "sft")
    prompts = [json.loads(line)["prompt"] for line in
               (word_world / "prompts.jsonl").read_text().splitlines()]  # fmt: skip
    records, _ = label_comparisons(lm, prompts * 3, 4, "sentiment", max_new_tokens=6, seed=0)
    path = word_world / "ranked.jsonl"
    write_jsonl(path, records)
    return path


def _dpo_config(world, data, *sets):
    return runs.resolve_config(dpo.ALGO, dpo.Config, "words", overrides=[
        f"base={world / 'sft'}", f"data={data}", "steps=100", "batch_prompts=8",
        "learning_rate=3e-3", "warmup_steps=5", "log_every=50", "beta=0.1", "device=cpu",
        "holdout_fraction=0.2", *sets,
    ])  # fmt: skip


@torch.no_grad()
def _mean_sentiment(lm, prompts, seed=5):
    generator = torch.Generator().manual_seed(seed)
    ids = [lm.tokenizer.encode(p) for p in prompts]
    result = sample(lm.model.eval(), ids, max_new_tokens=6, eos_id=lm.tokenizer.eos_id,
                    pad_id=lm.tokenizer.pad_id, generator=generator)  # fmt: skip
    texts = [lm.tokenizer.decode(r) for r in result.responses]
    return float(np.mean([sentiment(p, t) for p, t in zip(prompts, texts, strict=True)]))


def test_dpo_raises_the_preferred_behaviour(word_world, ranked, tmp_path):  # noqa: F811
    config = _dpo_config(word_world, ranked)
    prepared = dpo.prepare(config)
    prompts = ["table door", "river stone", "paper chair", "street window"] * 16
    before = _mean_sentiment(prepared.lm, prompts)
    run = runs.create_run(dpo.ALGO, config, "words", tmp_path / "dpo", quiet=True)
    lm = dpo.train(config, run, prepared)
    after = _mean_sentiment(lm, prompts)
    with open(tmp_path / "dpo" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    print(f"DPO: VADER of samples {before:.3f} -> {after:.3f}; held-out accuracy "
          f"{rows[0]['held_out_accuracy']} -> {rows[-1]['held_out_accuracy']}, margin "
          f"{rows[-1]['held_out_margin']}")  # fmt: skip
    assert float(rows[0]["held_out_loss"]) == pytest.approx(math.log(2), abs=1e-6)
    assert float(rows[0]["held_out_margin"]) == 0.0
    assert float(rows[-1]["held_out_accuracy"]) > 0.75
    assert float(rows[-1]["held_out_margin"]) > 0.0
    assert after > before + 0.3


def test_a_short_dpo_run_changes_every_parameter(word_world, ranked, tmp_path):  # noqa: F811
    config = _dpo_config(word_world, ranked, "steps=2", "log_every=2", "learning_rate=1e-2",
                         "warmup_steps=0")  # fmt: skip
    prepared = dpo.prepare(config)
    before = {k: v.detach().clone() for k, v in prepared.lm.model.state_dict().items()}
    run = runs.create_run(dpo.ALGO, config, "words", tmp_path / "dpo", quiet=True)
    dpo.train(config, run, prepared)
    after, meta = checkpoint.load(tmp_path / "dpo" / "checkpoints", algo="lm-dpo")
    names = [k for k in after if k.startswith("model/")]
    assert names and meta["step"] == 2
    assert not [n for n in names if np.array_equal(after[n], before[n[6:]].numpy())]
    for name, tensor in prepared.reference.state_dict().items():  # the reference is frozen
        assert torch.equal(tensor, before[name]), name


def test_cli_dpo_run_and_bad_data(pretrained, lm_here, tmp_path):
    run_dir, _ = pretrained
    (tmp_path / "bad.jsonl").write_text(json.dumps({"prompt": "p", "responses": ["x"]}) + "\n")
    bad = run_in_one_process([(tmp_path, ["lm", "dpo", run_dir, "--data", "bad.jsonl"]),
                              (tmp_path, ["lm", "dpo", run_dir])])  # fmt: skip
    assert_user_error(bad[0], "bad.jsonl:1", "a comparison needs at least 2")
    assert_user_error(bad[1], "needs --data")
    records = [{"prompt": f"The {w} is", "responses": [" good and nice.", " bad and sad."]}
               for w in ("list", "dict", "set", "tuple", "module", "class")]  # fmt: skip
    (tmp_path / "ranked.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    result = lm_here("dpo", run_dir, "--data", "ranked.jsonl", "--steps", "2", "--run-dir", "d",
                    "--quiet", "--set", "log_every=1", "--set", "batch_prompts=2")  # fmt: skip
    assert result.returncode == 0, result
    assert "held-out preference accuracy" in result.stdout
    with open(tmp_path / "d" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["step"] for r in rows] == ["0", "1", "2"]
    assert float(rows[0]["held_out_loss"]) == pytest.approx(math.log(2), abs=1e-6)

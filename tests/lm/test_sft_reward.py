"""SFT's response-only loss, the reward model's loss and learning, every parameter trained."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bellman import checkpoint
from bellman.lm import batch as lm_batch
from bellman.lm import model as lm_model
from bellman.lm import reward_model, runs, sft
from bellman.lm.rewards import judge_rank, sentiment
from bellman.lm.tokenizer import TOKENIZER_FILE, tokenize_pair, train_tokenizer


def _tiny_gpt(vocab: int, seed: int = 0):
    return lm_model.build_gpt(vocab, 1, 32, 2, 48, 0.0, 0, 1, seed=seed).eval()


def test_sft_loss_is_the_mean_over_response_tokens_only():
    model = _tiny_gpt(40)
    prompts, responses = [[5, 6, 7], [8]], [[9, 10], [11, 12, 13, 1]]
    batch = lm_batch.pack(prompts, responses, pad_id=0)
    with torch.no_grad():
        loss = sft.sft_loss(model, batch)
        terms = []
        for prompt, response in zip(prompts, responses, strict=True):
            logits = model(input_ids=torch.tensor([prompt + response])).logits[0]
            predicted = logits[len(prompt) - 1 : len(prompt) + len(response) - 1]
            terms.append(F.cross_entropy(predicted, torch.tensor(response), reduction="none"))
        by_hand = torch.cat(terms).mean()
        # the same loss over every token (prompt included) is a different number
        every = [model(input_ids=torch.tensor([p + r])).logits[0, :-1] for p, r in
                 zip(prompts, responses, strict=True)]  # fmt: skip
        targets = [torch.tensor((p + r)[1:]) for p, r in zip(prompts, responses, strict=True)]
        all_tokens = F.cross_entropy(torch.cat(every), torch.cat(targets))
    torch.testing.assert_close(loss, by_hand, rtol=1e-5, atol=1e-6)
    assert not torch.isclose(loss, all_tokens, rtol=1e-3)
    assert batch.response_mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]


def test_preference_loss_is_exactly_minus_log_sigmoid_of_the_margin():
    s_w, s_l = 1.25, -0.5
    winners, losers, prompts = (torch.tensor([0]), torch.tensor([1]), torch.tensor([0]))
    loss = reward_model.preference_loss(torch.tensor([s_w, s_l]), winners, losers, prompts)
    assert loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(-(s_w - s_l)))), abs=1e-7)
    # K = 3 then K = 2: each prompt's pairs averaged, then the prompts averaged
    ranked = [
        reward_model.TokenizedComparison([1], [[2], [3], [4]], None),
        reward_model.TokenizedComparison([1], [[5], [6]], None),
    ]
    winners, losers, prompts = reward_model.comparison_pairs(ranked)
    assert list(zip(winners.tolist(), losers.tolist(), strict=True)) == [
        (0, 1), (0, 2), (1, 2), (3, 4),
    ]  # fmt: skip
    scores = torch.tensor([2.0, 0.5, -1.0, 0.3, 0.7])
    nll = lambda w, lose: -math.log(1 / (1 + math.exp(-(scores[w] - scores[lose]).item())))  # noqa: E731
    expected = 0.5 * (nll(0, 1) + nll(0, 2) + nll(1, 2)) / 3 + 0.5 * nll(3, 4)
    loss = reward_model.preference_loss(scores, winners, losers, prompts)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    tied = [reward_model.TokenizedComparison([1], [[2], [3], [4]], (1.0, 1.0, 0.0))]
    assert reward_model.comparison_pairs(tied)[0].tolist() == [0, 1]  # (0, 1) is a tie


def test_reward_inputs_are_tokenize_pair_then_pack():
    tokenizer = train_tokenizer(["good day", "bad day"], 280)
    batch = reward_model.reward_inputs(tokenizer, ["good", "a"], [" day", " bad day"])
    pairs = [tokenize_pair(tokenizer, "good", " day"), tokenize_pair(tokenizer, "a", " bad day")]
    expected = lm_batch.pack([p for p, _ in pairs], [r for _, r in pairs], tokenizer.pad_id)
    assert torch.equal(batch.input_ids, expected.input_ids)
    assert batch.last_index.tolist() == expected.last_index.tolist()
    assert int(batch.input_ids[1, batch.last_index[1]]) == tokenizer.eos_id


def test_every_trainable_parameter_changes_in_a_short_sft_run(pretrained, tmp_path):
    base, _ = pretrained
    demos = tmp_path / "demos.jsonl"
    demos.write_text("".join(
        json.dumps({"prompt": f"The {word} is", "response": f" a fine {word} indeed."}) + "\n"
        for word in ("list", "dict", "set", "tuple", "module", "class", "function", "name")
    ))  # fmt: skip
    config = runs.resolve_config(sft.ALGO, sft.Config, "pydoc", overrides=[
        f"base={base}", f"data={demos}", "steps=3", "batch_size=4", "learning_rate=1e-2",
        "warmup_steps=0", "log_every=3", "device=cpu",
    ])  # fmt: skip
    run = runs.create_run(sft.ALGO, config, "pydoc", tmp_path / "sft", quiet=True)
    sft.train(config, run, sft.prepare(config))
    before, _ = checkpoint.load(base / "checkpoints")
    after, meta = checkpoint.load(tmp_path / "sft" / "checkpoints", algo="lm-sft")
    names = [key for key in before if key.startswith("model/")]
    assert names and set(names) == {key for key in after if key.startswith("model/")}
    unchanged = [name for name in names if np.array_equal(before[name], after[name])]
    assert not unchanged
    assert (tmp_path / "sft" / TOKENIZER_FILE).exists() and meta["step"] == 3


POSITIVE = "good great happy love wonderful nice best excellent".split()
NEGATIVE = "bad awful sad hate terrible worst ugly horrible".split()
NEUTRAL = "table chair door window street paper river stone".split()


def test_reward_model_learns_a_small_preference_task(tmp_path):
    """A tiny transformers model folder (also: any local causal LM loads) + judge-ranked
    responses; the held-out pairwise accuracy must be far above chance."""
    rng = np.random.default_rng(0)
    tokenizer = train_tokenizer([" ".join(POSITIVE + NEGATIVE + NEUTRAL)] * 3, 300)
    folder = tmp_path / "tiny-gpt"
    _tiny_gpt(tokenizer.vocab_size).save_pretrained(folder)
    tokenizer.save(folder / TOKENIZER_FILE)
    records = []
    for number in range(160):
        responses = [
            " " + " ".join(rng.choice(POSITIVE + NEGATIVE + NEUTRAL, size=3)) for _ in range(4)
        ]
        order, scores = judge_rank(f"item {number}:", responses, sentiment)
        if scores[order[0]] != scores[order[-1]]:
            records.append({"prompt": f"item {number}:", "responses": [responses[i] for i in order],
                            "scores": [scores[i] for i in order]})  # fmt: skip
    data = tmp_path / "ranked.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    config = runs.resolve_config(reward_model.ALGO, reward_model.Config, "words", overrides=[
        f"base={folder}", f"data={data}", "steps=150", "batch_prompts=8", "learning_rate=3e-3",
        "log_every=75", "holdout_fraction=0.25", "device=cpu",
    ])  # fmt: skip
    run = runs.create_run(reward_model.ALGO, config, "words", tmp_path / "rm", quiet=True)
    reward_model.train(config, run, reward_model.prepare(config))
    with open(tmp_path / "rm" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    accuracy = float(rows[-1]["held_out_accuracy"])
    assert accuracy > 0.8, rows
    loaded, loaded_tokenizer = reward_model.load_reward_model(tmp_path / "rm")
    batch = reward_model.reward_inputs(loaded_tokenizer, ["item 1:", "item 1:"],
                                       [" wonderful great love", " awful hate sad"])  # fmt: skip
    with torch.no_grad():
        scores = loaded.eval()(batch)
    assert scores[0] > scores[1]

"""RLHF with PPO: the per-token KL, the terminal reward, GAE and group baselines by hand, the
pitfalls (KL exactly 0 and ratio exactly 1 at step 0, rollout log-probs = recomputed ones), every
parameter trained, learning (PPO, GRPO, RLOO raise the true reward; PPO-ptx keeps perplexity),
exact resume and the CLI's bad-input paths."""

from __future__ import annotations

import copy
import csv
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from bellman import checkpoint
from bellman.lm import batch as lm_batch
from bellman.lm import model as lm_model
from bellman.lm import reward_model, rlhf_ppo, runs, sampling
from bellman.lm.batch import pack
from bellman.lm.tokenizer import tokenize_pair
from tests.conftest import assert_user_error, run_in_one_process
from tests.lm.conftest import train_tiny_sft

torch.set_num_threads(1)

POSITIVE = "good great happy love wonderful nice best excellent".split()
NEGATIVE = "bad awful sad hate terrible worst ugly horrible".split()
NEUTRAL = "table chair door window street paper river stone".split()


def build_word_world(root: Path) -> Path:
    """A corpus of random sentiment/neutral words, a 1-block GPT trained on it briefly and saved
    as a transformers folder ("the SFT model"), and neutral two-word prompts (JSONL)."""
    rng = np.random.default_rng(0)
    words = POSITIVE + NEGATIVE + NEUTRAL
    docs = [" ".join(rng.choice(words, size=12)) for _ in range(300)]
    (root / "words.txt").write_text("\n\n".join(docs))
    train_tiny_sft(docs, root / "sft", rng, vocab_size=320, width=32, steps=150)
    prompts = [" ".join(rng.choice(NEUTRAL, size=2)) for _ in range(40)]
    (root / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    return root


@pytest.fixture(scope="session")
def word_world(tmp_path_factory) -> Path:
    return build_word_world(tmp_path_factory.mktemp("words"))


#: PPO settings of the learning tests: 30 iterations of 16 six-token responses.
FAST = [
    "judge=sentiment", "steps=30", "batch_prompts=16", "minibatch_size=8", "ppo_epochs=2",
    "max_new_tokens=6", "learning_rate=3e-3", "kl_coef=0.05", "adaptive_kl=false",
    "eval_every=30", "eval_tokens=512", "device=cpu", "log_every=5", "value_init=sft",
]  # fmt: skip


def ppo_config(world: Path, *sets: str) -> rlhf_ppo.RLHFPPOConfig:
    overrides = [f"base={world / 'sft'}", f"prompts={world / 'prompts.jsonl'}", *FAST, *sets]
    return runs.resolve_config(rlhf_ppo.ALGO, rlhf_ppo.Config, str(world / "words.txt"),
                               overrides=overrides)  # fmt: skip


def run_ppo(world: Path, out: Path, *sets: str) -> list[dict[str, str]]:
    config = ppo_config(world, *sets)
    run = runs.create_run(rlhf_ppo.ALGO, config, "words", out, quiet=True)
    rlhf_ppo.train(config, run, rlhf_ppo.prepare(config))
    with open(out / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def _tiny_gpt(dropout: float = 0.0):
    return lm_model.build_gpt(60, 2, 32, 2, 40, dropout, 0, 1, seed=0).eval()


# ---- the pure steps against hand-computed values -----------------------------------------------
def test_k1_kl_and_the_terminal_reward_by_hand_whatever_the_padding():
    # two rows: prompts of 3 and 1 tokens (left padding), responses of 2 and 4 tokens
    batch = lm_batch.pack([[5, 6, 7], [8]], [[9, 1], [10, 11, 12, 13]], pad_id=0)
    mask = batch.response_mask
    log_probs = torch.tensor([[-1.0, -2.0, 0.0, 0.0], [-0.5, -0.25, -3.0, -1.0]])
    ref = torch.tensor([[-1.5, -1.0, -7.0, -7.0], [-0.5, -1.25, -2.0, -4.0]])
    kl = rlhf_ppo.kl_penalty(log_probs, ref, mask)
    assert kl.tolist() == [[0.5, -1.0, 0.0, 0.0], [0.0, 1.0, -1.0, 3.0]]  # padding carries none
    rewards = rlhf_ppo.token_rewards(torch.tensor([2.0, -1.0]), kl, 0.1, batch.response_lengths,
                                     mask)  # fmt: skip
    expected = [[-0.05, 0.1 + 2.0, 0.0, 0.0], [0.0, -0.1, 0.1, -0.3 - 1.0]]
    torch.testing.assert_close(rewards, torch.tensor(expected))
    # the terminal reward sits on the last real response token, EOS when generated: the token
    # the reward model reads (column last_index of the packed batch)
    for b, length in enumerate(batch.response_lengths.tolist()):
        assert batch.prompt_width + length - 1 == int(batch.last_index[b])
    assert int(batch.input_ids[0, batch.last_index[0]]) == 1  # row 0 ended with EOS


def test_gae_over_tokens_by_hand():
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    rewards = torch.tensor([[0.0, -0.5, 2.0], [1.0, 0.0, 0.0]])
    values = torch.tensor([[0.5, 1.0, 1.5], [0.25, 9.0, 9.0]])  # values after the end ignored
    advantages, returns = rlhf_ppo.gae_over_tokens(rewards, values, mask, gamma=1.0, lam=0.5)
    d2, d1, d0 = 2.0 - 1.5, -0.5 + 1.5 - 1.0, 0.0 + 1.0 - 0.5
    a2, a1 = d2, d1 + 0.5 * d2
    expected = torch.tensor([[d0 + 0.5 * a1, a1, a2], [1.0 - 0.25, 0.0, 0.0]])
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(returns, (expected + values) * mask)


def test_grpo_and_rloo_advantages_on_a_worked_example():
    rewards = torch.tensor([1.0, 2.0, 3.0, 6.0, 5.0, 5.0, 5.0, 5.0])  # two groups of G = 4
    std = math.sqrt(14 / 3)  # unbiased std of (1, 2, 3, 6) around its mean 3
    grpo = rlhf_ppo.group_advantages(rewards, 4, "grpo")
    torch.testing.assert_close(grpo[:4], torch.tensor([-2.0, -1.0, 0.0, 3.0]) / (std + 1e-4))
    assert grpo[4:].tolist() == [0.0] * 4  # equal rewards: no signal
    rloo = rlhf_ppo.group_advantages(rewards, 4, "rloo")  # r_i - mean of the other three
    torch.testing.assert_close(rloo[:4], torch.tensor([1 - 11 / 3, 2 - 10 / 3, 0.0, 4.0]))
    assert rloo[4:].tolist() == [0.0] * 4


def test_adaptive_kl_controller_by_hand():
    assert rlhf_ppo.adaptive_kl_coef(0.2, 9.0, 6.0, 10_000, 500) == pytest.approx(
        0.2 * (1 + 0.2 * 0.05)  # error 0.5 clipped to 0.2
    )
    assert rlhf_ppo.adaptive_kl_coef(0.2, 5.4, 6.0, 1_000, 100) == pytest.approx(0.2 * (1 - 0.01))
    assert rlhf_ppo.adaptive_kl_coef(0.2, 0.0, 6.0, 100, 100) == pytest.approx(0.2 * 0.8)


def test_masked_whiten():
    values = torch.tensor([[1.0, 3.0, 100.0], [5.0, 7.0, -100.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    white = rlhf_ppo.masked_whiten(values, mask)
    real = white[mask.bool()]
    assert abs(float(real.mean())) < 1e-6 and float(real.std(unbiased=False)) == pytest.approx(1.0)
    assert white[:, 2].tolist() == [0.0, 0.0]
    scaled = rlhf_ppo.masked_whiten(values, mask, shift_mean=False)
    assert float(scaled[mask.bool()].mean()) == pytest.approx(4.0)


# ---- the pitfalls ------------------------------------------------------------------------------
def test_policy_equal_to_reference_gives_kl_exactly_zero_and_ratio_exactly_one():
    policy = _tiny_gpt()
    reference = copy.deepcopy(policy)
    tokenizer = type("T", (), {"eos_id": 1, "pad_id": 0, "decode": staticmethod(str)})()
    lm = lm_model.LanguageModel(policy, tokenizer)
    prompts = [("a", [5, 6, 7]), ("b", [8]), ("c", [9, 10]), ("d", [11, 12, 13, 14])] * 2
    config = rlhf_ppo.RLHFPPOConfig(base="x", judge="sentiment", max_new_tokens=8, temperature=0.7,
                                minibatch_size=4, batch_prompts=8)  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    batch, _, old, ref, _, _ = rlhf_ppo.generate_rollout(lm, reference, None, prompts, config,
                                                         generator)  # fmt: skip
    kl = rlhf_ppo.kl_penalty(old, ref, batch.response_mask)
    assert torch.equal(kl, torch.zeros_like(kl))
    rows = torch.tensor([6, 1, 3, 4])  # a shuffled minibatch, as in step 6
    new = rlhf_ppo.policy_log_probs(policy, lm_batch.select_rows(batch, rows), 0.7)
    log_ratio = (new - old[rows])[batch.response_mask[rows].bool()]
    assert torch.equal(log_ratio.exp(), torch.ones_like(log_ratio))


def test_rollout_log_probs_equal_the_recomputed_ones_with_dropout_off():
    policy = _tiny_gpt(dropout=0.3)  # dropout exists but the model is in eval mode (as in RL)
    prompts = [[5, 6, 7], [8], [9, 10]] * 3
    for temperature in (1.0, 0.6):
        generator = torch.Generator().manual_seed(1)
        samples = sampling.sample(policy, prompts, max_new_tokens=10, eos_id=1, pad_id=0,
                                  temperature=temperature, generator=generator)  # fmt: skip
        batch = lm_batch.pack(prompts, samples.responses, 0)
        with torch.no_grad():
            again = rlhf_ppo.policy_log_probs(policy, batch, temperature)
            twice = rlhf_ppo.policy_log_probs(policy, batch, temperature)
        torch.testing.assert_close(again, samples.log_probs, rtol=0, atol=1e-5)
        assert torch.equal(again, twice)  # deterministic: no dropout
        # scored without the sampling temperature, the log-probs would be different numbers
        if temperature != 1.0:
            with torch.no_grad():
                plain = rlhf_ppo.policy_log_probs(policy, batch, 1.0)
            assert (plain - samples.log_probs).abs().max() > 1e-2


# ---- a short run, the CLI ----------------------------------------------------------------------
def test_a_short_run_changes_every_trainable_parameter(word_world, tmp_path):
    config = ppo_config(word_world, "steps=2", "eval_every=100", "ptx_coef=0.5")
    prepared = rlhf_ppo.prepare(config)
    critic_before = {k: v.detach().clone() for k, v in
                     rlhf_ppo.make_critic(prepared, config).state_dict().items()}  # fmt: skip
    policy_before = {k: v.detach().clone() for k, v in prepared.policy.model.state_dict().items()}
    run = runs.create_run(rlhf_ppo.ALGO, config, "words", tmp_path / "run", quiet=True)
    rlhf_ppo.train(config, run, prepared)
    after, meta = checkpoint.load(tmp_path / "run" / "checkpoints", algo="lm-ppo")
    unchanged = []
    for prefix, before in (("model/", policy_before), ("critic/", critic_before)):
        names = [k for k in after if k.startswith(prefix)]
        assert names
        start = len(prefix)
        unchanged += [n for n in names if np.array_equal(after[n], before[n[start:]].numpy())]
    assert not unchanged
    assert any(k.startswith("critic/head") for k in after)
    assert meta["step"] == 2 and runs.load_lm(tmp_path / "run").tokenizer.vocab_size > 0


def test_learned_and_rule_based_rewards_combine_and_the_value_starts_as_the_reward_model(
    word_world, tmp_path
):
    records = []
    rng = np.random.default_rng(1)
    for number in range(12):
        responses = [" " + " ".join(rng.choice(POSITIVE + NEGATIVE, size=3)) for _ in range(3)]
        records.append({"prompt": f"table {number}", "responses": responses})
    (tmp_path / "ranked.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    rm_config = runs.resolve_config(reward_model.ALGO, reward_model.Config, "words", overrides=[
        f"base={word_world / 'sft'}", f"data={tmp_path / 'ranked.jsonl'}", "steps=2",
        "log_every=2", "device=cpu",
    ])  # fmt: skip
    rm_run = runs.create_run(reward_model.ALGO, rm_config, "words", tmp_path / "rm", quiet=True)
    reward_model.train(rm_config, rm_run, reward_model.prepare(rm_config))
    config = ppo_config(word_world, f"reward_model={tmp_path / 'rm'}", "reward_weight=2.0",
                        "judge_weight=0.5", "value_init=reward_model")  # fmt: skip
    prepared = rlhf_ppo.prepare(config)
    critic = rlhf_ppo.make_critic(prepared, config)
    for name, tensor in prepared.reward_model.state_dict().items():
        assert torch.equal(critic.state_dict()[name], tensor)
    prompts, responses = ["table door", "river stone"], [" love great", " hate awful"]
    scores, learned, true = rlhf_ppo.evaluate(prompts, responses, prepared.policy.tokenizer,
                                              prepared.reward_model, config, "cpu")  # fmt: skip
    with torch.no_grad():
        by_hand = prepared.reward_model(reward_model.reward_inputs(
            prepared.policy.tokenizer, prompts, responses))  # fmt: skip
    from bellman.lm.rewards import sentiment

    judged = torch.tensor([sentiment(p, r) for p, r in zip(prompts, responses, strict=True)])
    torch.testing.assert_close(learned, by_hand)
    torch.testing.assert_close(scores, 2.0 * by_hand + 0.5 * judged)
    torch.testing.assert_close(true, judged)
    # a response that ran to the context (no room for EOS) is read cut to the context, not an
    # IndexError: the learned reward is that of the first 32 tokens
    tokenizer = prepared.policy.tokenizer
    long_response = " love" * 60
    _, learned, _ = rlhf_ppo.evaluate(["table door"], [long_response], tokenizer,
                                      prepared.reward_model, config, "cpu")  # fmt: skip
    prompt_ids, response_ids = tokenize_pair(tokenizer, "table door", long_response)
    cut = response_ids[: 32 - len(prompt_ids)]
    with torch.no_grad():
        first_32 = prepared.reward_model(pack([prompt_ids], [cut], tokenizer.pad_id))
    assert len(prompt_ids) + len(response_ids) > 32
    torch.testing.assert_close(learned, first_32)


def test_a_ppo_step_calls_transformers_the_way_the_installed_release_wants(word_world):
    """Rollout (sampling with the key/value cache), reward, optimisation: no FutureWarning."""
    config = ppo_config(word_world, "batch_prompts=4", "minibatch_size=4", "ppo_epochs=1")
    prepared = rlhf_ppo.prepare(config)
    critic = rlhf_ppo.make_critic(prepared, config)
    trained = torch.nn.ModuleDict({"policy": prepared.policy.model, "critic": critic})
    optimizer = runs.adamw(trained, config.learning_rate, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        metrics, _ = rlhf_ppo.ppo_step(prepared, critic, optimizer, 0.05, config,
                                       np.random.default_rng(0), torch.Generator())  # fmt: skip
    assert math.isfinite(metrics["policy_loss"]) and metrics["response_length"] >= 1


def test_a_stopped_run_resumes_exactly(word_world, tmp_path, monkeypatch):
    config = ppo_config(word_world, "steps=4", "checkpoint_every=2", "log_every=1",
                        "eval_every=4", "adaptive_kl=true", "target_kl=0.5")  # fmt: skip
    one_go = runs.create_run(rlhf_ppo.ALGO, config, "w", tmp_path / "one-go", quiet=True)
    rlhf_ppo.train(config, one_go)
    stopped = runs.create_run(rlhf_ppo.ALGO, config, "w", tmp_path / "stopped", quiet=True)
    step_function = rlhf_ppo.ppo_step
    calls = []

    def stop_in_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            stopped.stop_requested = True
        return step_function(*args, **kwargs)

    monkeypatch.setattr(rlhf_ppo, "ppo_step", stop_in_the_second)
    rlhf_ppo.train(config, stopped)
    monkeypatch.setattr(rlhf_ppo, "ppo_step", step_function)
    assert checkpoint.load(tmp_path / "stopped" / "checkpoints")[1]["step"] == 2
    resumed = runs.resume_run(tmp_path / "stopped", rlhf_ppo.ALGO, rlhf_ppo.Config, None, True)
    rlhf_ppo.train(resumed.config, resumed)
    expected, meta = checkpoint.load(tmp_path / "one-go" / "checkpoints", "step-4")
    arrays, again = checkpoint.load(tmp_path / "stopped" / "checkpoints", "step-4")
    assert set(arrays) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(arrays[key], value, err_msg=key)
    assert meta["state"]["kl_coef"] == again["state"]["kl_coef"] != 0.05


def test_cli_bad_inputs(pretrained, tmp_path):
    run_dir, _ = pretrained
    long = " ".join(["word"] * 200)
    (tmp_path / "prompts.jsonl").write_text(json.dumps({"prompt": "ok"}) + "\n"
                                            + json.dumps({"prompt": long}) + "\n")  # fmt: skip
    sentiment = ["--judge", "sentiment"]
    cases = [
        ([], ["no reward given"]),
        (["--reward-model", run_dir, *sentiment], ["is a lm-pretrain run, not a reward model"]),
        (["--judge", "sentimnt"], ["sentimnt"]),
        ([*sentiment, "--set", "advantage=grpo"], ["needs group_size >= 2", "group_size = 1"]),
        ([*sentiment, "--set", "batch_prompts=6", "--set", "minibatch_size=4"], ["must divide"]),
        ([*sentiment, "--set", f"prompts={tmp_path / 'prompts.jsonl'}"],
         ["prompts.jsonl:2", "leaves no room"]),
    ]  # fmt: skip
    commands = [(tmp_path, ["lm", "ppo", run_dir, *args]) for args, _ in cases]
    for (_, fragments), result in zip(cases, run_in_one_process(commands), strict=True):
        assert_user_error(result, *fragments)
    assert not (tmp_path / "runs").exists()


def test_cli_runs_ppo_and_writes_every_metric(pretrained, lm_here, tmp_path):
    run_dir, _ = pretrained
    result = lm_here("ppo", run_dir, "--judge", "sentiment", "--steps", "2", "--run-dir", "ppo",
                    "--quiet", "--set", "batch_prompts=4", "--set", "minibatch_size=4",
                    "--set", "max_new_tokens=6", "--set", "eval_tokens=256",
                    "--set", "ppo_epochs=1")  # fmt: skip
    assert result.returncode == 0, result
    assert "held-out true reward" in result.stdout
    with open(tmp_path / "ppo" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["step"] for row in rows] == ["0", "1", "2"]
    for column in set(rlhf_ppo.COLUMNS) - {"reward_learned", "ptx_loss"}:  # no RM, no ptx
        assert rows[-1][column] != "", column
    generated = lm_here("generate", "ppo", "--prompt", "The", "--max-new-tokens", "4")
    assert generated.returncode == 0, generated


# ---- learning ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("advantage", "sets"),
    [("gae", ()), ("grpo", ("group_size=4", "batch_prompts=4")),
     ("rloo", ("group_size=4", "batch_prompts=4"))],
)  # fmt: skip
def test_ppo_raises_the_true_reward(word_world, tmp_path, advantage, sets):
    rows = run_ppo(word_world, tmp_path / "run", f"advantage={advantage}", *sets)
    before, after = float(rows[0]["eval_reward_true"]), float(rows[-1]["eval_reward_true"])
    print(f"{advantage}: held-out VADER {before:.3f} -> {after:.3f}, "
          f"KL {float(rows[-1]['eval_kl']):.2f}")  # fmt: skip
    assert float(rows[0]["eval_kl"]) == 0.0
    assert before < 0.0 and after > 0.6, rows


def test_ptx_keeps_held_out_perplexity_close_to_the_sft_model(word_world, tmp_path):
    plain = run_ppo(word_world, tmp_path / "plain")
    ptx = run_ppo(word_world, tmp_path / "ptx", "ptx_coef=1.0")
    sft_ppl = float(plain[0]["held_out_perplexity"])
    plain_ppl, ptx_ppl = (float(r[-1]["held_out_perplexity"]) for r in (plain, ptx))
    print(f"perplexity: SFT {sft_ppl:.2f}, PPO {plain_ppl:.2f}, PPO-ptx {ptx_ppl:.2f}")
    assert ptx_ppl < 1.1 * sft_ppl < plain_ppl
    assert float(ptx[-1]["eval_reward_true"]) > float(ptx[0]["eval_reward_true"]) + 0.5
    assert float(ptx[-1]["ptx_loss"]) > 0 and plain[-1]["ptx_loss"] == ""

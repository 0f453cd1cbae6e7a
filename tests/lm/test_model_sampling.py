"""Tokenizer, batch layout, checkpoints with tied weights, the reward model's read-out, sampling."""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bellman.errors import CheckpointError, ConfigError
from bellman.lm import batch as lm_batch
from bellman.lm import model as lm_model
from bellman.lm import sampling
from bellman.lm.tokenizer import TextTokenizer, tokenize_pair, train_tokenizer

TEXTS = [
    "the cat sat on the mat", "the dog ate the bone", "a happy day in the sun",
    "the sad rain fell all day", "catalogues of cats and dogs",
] * 4  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, 300)


@pytest.fixture(scope="module")
def gpt(tokenizer):
    model = lm_model.build_gpt(tokenizer.vocab_size, 2, 32, 2, 32, 0.0, tokenizer.pad_id,
                               tokenizer.eos_id, seed=0)  # fmt: skip
    return model.eval()


def test_tokenizer_has_distinct_pad_and_eos_and_round_trips(tokenizer, tmp_path):
    assert tokenizer.pad_id != tokenizer.eos_id
    ids = tokenizer.encode("the cat sat, the dog ate")
    assert tokenizer.decode(ids) == "the cat sat, the dog ate"
    tokenizer.save(tmp_path / "tokenizer.json")
    again = TextTokenizer.load(tmp_path / "tokenizer.json")
    assert (again.pad_id, again.eos_id, again.encode("cats")) == (
        tokenizer.pad_id, tokenizer.eos_id, tokenizer.encode("cats"),
    )  # fmt: skip


def test_prompt_and_response_are_tokenized_separately(tokenizer):
    prompt, response = tokenize_pair(tokenizer, "the ca", "t sat")
    assert prompt == tokenizer.encode("the ca")
    assert response == tokenizer.encode("t sat") + [tokenizer.eos_id]
    assert tokenize_pair(tokenizer, "x", "y", eos=False)[1] == tokenizer.encode("y")


def test_pack_left_pads_prompts_right_pads_responses_masks_from_lengths():
    pad = 0
    # PAD's id also appears as a real token (the 0 in the second prompt): masks must not care
    batch = lm_batch.pack([[5, 6, 7], [0, 9]], [[11], [12, 13, 14]], pad)
    assert batch.prompt_width == 3
    assert batch.input_ids.tolist() == [[5, 6, 7, 11, 0, 0], [0, 0, 9, 12, 13, 14]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 1]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 3, 3], [0, 0, 1, 2, 3, 4]]
    assert batch.response_mask.tolist() == [[1, 0, 0], [1, 1, 1]]
    assert batch.last_index.tolist() == [3, 5]
    with pytest.raises(ConfigError, match="longer than the model's context of 4"):
        lm_batch.pack([[1, 2, 3]], [[4, 5]], pad, context=4)


def test_checkpoint_round_trip_stores_tied_weights_once_and_reties(gpt):
    arrays = lm_model.model_arrays(gpt)
    assert "model/transformer.wte.weight" in arrays and "model/lm_head.weight" not in arrays
    again = lm_model.model_from_config_dict(json.loads(json.dumps(lm_model.config_dict(gpt))))
    lm_model.load_model_arrays(again, arrays)
    assert again.lm_head.weight is again.transformer.wte.weight
    for name, tensor in gpt.state_dict().items():
        torch.testing.assert_close(again.state_dict()[name], tensor, rtol=0, atol=0)
    with torch.no_grad():  # still tied: a change to the embedding is a change to the output
        again.transformer.wte.weight[3] += 1.0
    assert torch.equal(again.lm_head.weight[3], again.transformer.wte.weight[3])
    broken = {k: v for k, v in arrays.items() if "ln_f" not in k}
    with pytest.raises(CheckpointError, match="ln_f"):
        lm_model.load_model_arrays(again, broken)
    wrong = {**arrays, "model/transformer.wpe.weight": np.zeros((3, 3), np.float32)}
    with pytest.raises(CheckpointError, match=r"shape \(3, 3\)"):
        lm_model.load_model_arrays(again, wrong)
    half = {**arrays, "model/transformer.wpe.weight": arrays["model/transformer.wpe.weight"]
            .astype(np.float16)}  # fmt: skip
    with pytest.raises(CheckpointError, match="dtype float16, expected float32"):
        lm_model.load_model_arrays(again, half)  # refused, not cast
    twice = {**arrays, "model/lm_head.weight": arrays["model/transformer.wte.weight"]}
    with pytest.raises(CheckpointError, match="tied tensor is stored once"):
        lm_model.load_model_arrays(again, twice)
    broken = {**arrays, "model/transformer.ln_f.bias": np.full_like(
        arrays["model/transformer.ln_f.bias"], np.nan)}  # fmt: skip
    with pytest.raises(CheckpointError, match="non-finite"):
        lm_model.load_model_arrays(again, broken)


def test_a_directory_that_is_not_a_causal_lm_is_one_clear_error(tmp_path):
    from bellman.lm.runs import load_lm

    (tmp_path / "vit").mkdir()
    (tmp_path / "vit" / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(ConfigError, match="is not a causal language model"):
        load_lm(tmp_path / "vit")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="is not a language model"):
        load_lm(tmp_path / "empty")


def test_reward_model_reads_the_last_real_token_whatever_the_padding(gpt):
    torch.manual_seed(0)
    reward_model = lm_model.RewardModel.from_lm(gpt).eval()
    prompts, responses = [[5, 6], [7, 8, 9, 10]], [[11, 12, 13], [14]]
    with torch.no_grad():
        together = reward_model(lm_batch.pack(prompts, responses, 0))
        alone = [
            reward_model(lm_batch.pack([p], [r], 0))
            for p, r in zip(prompts, responses, strict=True)
        ]
        # the same row with any ids on its padding, and a different PAD id: same score
        batch = lm_batch.pack(prompts, responses, 0)
        batch.input_ids[batch.attention_mask == 0] = 17
        noisy = reward_model(batch)
        hidden = reward_model.backbone(
            input_ids=torch.tensor([[5, 6, 11, 12, 13]])
        ).last_hidden_state
        by_hand = reward_model.head(hidden[0, -1]).squeeze()
    torch.testing.assert_close(together, torch.cat(alone), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(noisy, together, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(together[0], by_hand, rtol=1e-5, atol=1e-5)


def test_process_logits_top_k_and_top_p_by_hand():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    top_k = sampling.process_logits(logits, top_k=2)
    assert torch.isinf(top_k[0, 2:]).all() and torch.isfinite(top_k[0, :2]).all()
    top_p = sampling.process_logits(logits, top_p=0.7)  # 0.5 < 0.7 <= 0.5 + 0.3
    assert torch.isfinite(top_p[0, :2]).all() and torch.isinf(top_p[0, 2:]).all()
    assert torch.isfinite(sampling.process_logits(logits, top_p=0.5)).sum() == 1
    torch.testing.assert_close(sampling.process_logits(logits, temperature=2.0), logits / 2)


def test_batched_greedy_with_left_padding_equals_one_prompt_at_a_time(gpt, tokenizer):
    prompts = [tokenizer.encode(t) for t in ("the cat", "a happy day in the", "dogs")]
    batched = sampling.sample(gpt, prompts, max_new_tokens=8, greedy=True,
                              eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id)  # fmt: skip
    for b, prompt in enumerate(prompts):
        alone = sampling.sample(gpt, [prompt], max_new_tokens=8, greedy=True,
                                eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id)  # fmt: skip
        assert batched.responses[b] == alone.responses[0]


def test_every_sampling_mode_is_seeded_and_top_k_1_is_greedy(gpt, tokenizer):
    lm = lm_model.LanguageModel(gpt, tokenizer)
    prompts = ["the cat", "a sad"]
    greedy = lm.generate(prompts, 6, greedy=True)
    assert lm.generate(prompts, 6, top_k=1) == greedy
    modes = [{"temperature": 0.7}, {"top_k": 5}, {"top_p": 0.9}]
    for options in [*modes, {"temperature": 1.3, "top_k": 20, "top_p": 0.8}]:
        first = lm.generate(prompts, 6, generator=torch.Generator().manual_seed(3), **options)
        again = lm.generate(prompts, 6, generator=torch.Generator().manual_seed(3), **options)
        assert first == again and all(isinstance(text, str) for text in first)
    with pytest.raises(ConfigError, match="context is 32 tokens"):
        lm.generate(["the cat " * 40], 4)
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        lm.generate(prompts, 4, temperature=0.0)


class _CountingLM(torch.nn.Module):
    """A fake causal LM: row b says 3, 4, 5, ... and EOS (id 1) at its position prompt[0]."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.config = SimpleNamespace(n_positions=64)

    def forward(self, input_ids, attention_mask, position_ids, past_key_values=None, **_):
        start = past_key_values if past_key_values is not None else input_ids[:, -1]
        stop_at = start if past_key_values is not None else input_ids[
            torch.arange(len(input_ids)), (attention_mask == 0).sum(1)]  # fmt: skip
        position = position_ids[:, -1]
        logits = torch.full((len(input_ids), 1, 20), -10.0)
        following = torch.where(position + 1 >= stop_at, 1, (position + 3).clamp(max=19))
        logits[torch.arange(len(input_ids)), 0, following] = 10.0
        return SimpleNamespace(logits=logits, past_key_values=stop_at)


def test_sequences_stop_at_eos_and_are_padded_after_it():
    result = sampling.sample(_CountingLM(), [[4], [2, 9], [7]], max_new_tokens=10, greedy=True,
                             eos_id=1, pad_id=0)  # fmt: skip
    assert result.responses == [[3, 4, 5, 1], [1], [3, 4, 5, 6, 7, 8, 1]]
    assert result.lengths.tolist() == [4, 1, 7]
    assert result.tokens.tolist()[1] == [1, 0, 0, 0, 0, 0, 0]
    assert result.log_probs[1, 1:].abs().sum() == 0


def test_log_probs_of_samples_equal_response_log_probs_with_the_same_temperature(gpt, tokenizer):
    prompts = [tokenizer.encode(t) for t in ("the cat", "a happy day in the")]
    result = sampling.sample(gpt, prompts, max_new_tokens=6, temperature=0.7,
                             eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id,
                             generator=torch.Generator().manual_seed(0))  # fmt: skip
    batch = lm_batch.pack(prompts, result.responses, tokenizer.pad_id)
    with torch.no_grad():
        log_probs, mask = sampling.response_log_probs(gpt, batch, temperature=0.7)
        plain, _ = sampling.response_log_probs(gpt, batch, temperature=1.0)
    torch.testing.assert_close(log_probs, result.log_probs * mask, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(plain, log_probs)


def test_draw_samples_the_processed_distribution_and_reports_its_log_prob_and_entropy():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05, 0.0])
    logits = sampling.process_logits(torch.log(probs).expand(20_000, 5).clone(), top_k=4)
    expected = torch.log_softmax(logits[:1], -1)[0]
    choice, log_p, entropy = sampling.draw(logits.clone(), False, torch.Generator().manual_seed(0))
    frequencies = torch.bincount(choice, minlength=5).double() / len(choice)
    sigma = (probs * (1 - probs) / len(choice)).sqrt().double()
    assert ((frequencies - probs.double()).abs() <= 4 * sigma + 1e-12).all(), frequencies
    assert frequencies[4] == 0  # a removed token (-inf) is never drawn
    torch.testing.assert_close(log_p, expected[choice])
    true_entropy = -(probs[:4] * probs[:4].log()).sum()
    torch.testing.assert_close(entropy, true_entropy.expand(len(choice)))
    greedy, _, _ = sampling.draw(logits[:3].clone(), True, None)
    assert greedy.tolist() == [0, 0, 0]


def test_a_shared_prompt_is_prefilled_once_with_the_same_samples(gpt, tokenizer, monkeypatch):
    prompts = [tokenizer.encode(t) for t in ("the cat", "a happy day in the")]
    prompts = [p for p in prompts for _ in range(3)]  # groups of 3, as in GRPO
    calls = []

    def run():
        return sampling.sample(gpt, prompts, max_new_tokens=6, eos_id=tokenizer.eos_id,
                               pad_id=tokenizer.pad_id,
                               generator=torch.Generator().manual_seed(0))  # fmt: skip

    original = gpt.forward

    def counting(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(gpt, "forward", counting)
    shared = run()
    assert calls[0][0] == 2  # two distinct prompts went through the prefill

    def prefill_every_row(model, prompts, batch):
        output = model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            use_cache=True,
            logits_to_keep=1,
        )
        return output.logits, getattr(output, sampling.cache_keyword(model))

    monkeypatch.setattr(sampling, "prefill", prefill_every_row)
    plain = run()
    assert shared.responses == plain.responses
    assert torch.equal(shared.log_probs, plain.log_probs)


def test_generation_calls_transformers_the_way_the_installed_release_wants(gpt, tokenizer):
    """No FutureWarning (transformers 5 renamed `past_key_values` to `cache`): every `lm`
    command printed one."""
    lm = lm_model.LanguageModel(gpt, tokenizer)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        texts = lm.generate(["the cat", "a happy day in the"], 6, generator=torch.Generator())
        # a shared prompt: its cache is copied to the rows that share it
        shared = sampling.sample(gpt, [[5, 6], [5, 6]], max_new_tokens=4, eos_id=tokenizer.eos_id,
                                 pad_id=tokenizer.pad_id)  # fmt: skip
    assert len(texts) == 2 and shared.lengths.min() >= 1

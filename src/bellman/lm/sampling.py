"""Sampling from a causal LM: greedy, temperature, top-k and top-p, batched with left padding.

Autoregressive decoding (Radford et al. 2019; top-k: Fan et al. 2018; top-p / nucleus: Holtzman
et al. 2020):

    1. Left-pad the prompts to one width P (`model.pack`), positions from the lengths.
    2. Run the prompts through the model once, keeping the key/value cache.
    3. For t = 1..max_new_tokens:
    4.   logits -> `process_logits`: divide by the temperature, keep the k largest (top-k), keep
         the smallest set of tokens whose probability reaches p (top-p); the rest get -inf.
    5.   x_t = argmax (greedy) or x_t ~ softmax(processed logits).
    6.   A row that has produced EOS is finished: it gets PAD from then on and its length stops
         growing (the EOS counts). Stop when every row is finished.
    7.   Feed x_t with the cache; the attention mask grows by one column.

`response_log_probs` scores given responses under a model with the same `process_logits`
(temperature only), so the log-probs of RL rollouts are those of the distribution they were
drawn from: sampling with top-k/top-p and scoring without them would bias the KL estimate
(InstructGPT-style RL samples with plain temperature sampling for this reason).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bellman.errors import ConfigError
from bellman.lm.model import Batch, context_length, pack, response_logits


@dataclass
class Samples:
    """What `sample` returns.

    Attributes:
        responses: B lists of new ids, each ending at (and including) EOS when it was produced.
        tokens: [B, N] the same ids, PAD after each response's end.
        lengths: [B] len(responses[b]).
        log_probs: [B, N] log-probability of each sampled token under the processed
            distribution it was drawn from (0 after the end; greedy: under temperature 1).
    """

    responses: list[list[int]]
    tokens: torch.Tensor
    lengths: torch.Tensor
    log_probs: torch.Tensor


def check_sampling(temperature: float, top_k: int, top_p: float) -> None:
    """Raise ConfigError for values no sampler can use."""
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0, got {temperature} (use --greedy for argmax)")
    if top_k < 0:
        raise ConfigError(f"top_k must be >= 0 (0: off), got {top_k}")
    if not 0 < top_p <= 1:
        raise ConfigError(f"top_p must be in (0, 1] (1: off), got {top_p}")


def process_logits(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0
) -> torch.Tensor:
    """Step 4: temperature, then top-k, then top-p; removed tokens get -inf.

    Args:
        logits: [..., V].
        temperature: > 0; logits are divided by it.
        top_k: keep the k most likely tokens (0: all).
        top_p: keep the smallest set of most likely tokens with total probability >= p (1: all).

    Returns:
        [..., V] processed logits (log_softmax of them is the sampling distribution).
    """
    if temperature != 1.0:  # x / 1 is x: skip a copy of the [..., V] logits
        logits = logits / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        # drop a token when the tokens before it already reach p (the first is always kept)
        drop_sorted = (cumulative - sorted_logits.softmax(-1)) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


@torch.no_grad()
def sample(
    model,
    prompts: list[list[int]],
    *,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> Samples:
    """Continue every prompt by at most `max_new_tokens` tokens (steps 1-7 of the docstring).

    Args:
        model: a transformers causal LM (put in eval mode by the caller for RL; dropout is
            whatever mode the model is in).
        prompts: B lists of prompt ids.
        max_new_tokens: the most new tokens per row (fewer when the context is reached).
        eos_id, pad_id: the special ids.
        greedy: argmax instead of sampling (temperature, top-k and top-p are then ignored).
        temperature, top_k, top_p: see `process_logits`.
        generator: torch generator of the draws (default: torch's global one).

    Raises:
        ConfigError: a prompt fills the whole context, or bad sampling values.
    """
    check_sampling(temperature, top_k, top_p)
    device = next(model.parameters()).device
    context = context_length(model)
    batch = pack(prompts, None, pad_id, device)  # 1. left padding
    room = context - batch.prompt_width
    if room <= 0:
        raise ConfigError(
            f"a prompt of {batch.prompt_width} tokens leaves no room in the model's context of "
            f"{context} tokens"
        )
    steps = min(max_new_tokens, room)
    rows = len(prompts)
    tokens = torch.full((rows, steps), pad_id, dtype=torch.long, device=device)
    log_probs = torch.zeros((rows, steps), device=device)
    lengths = torch.zeros(rows, dtype=torch.long, device=device)
    finished = torch.zeros(rows, dtype=torch.bool, device=device)
    mask, positions = batch.attention_mask, batch.position_ids
    output = model(  # 2. the prompts, once
        input_ids=batch.input_ids, attention_mask=mask, position_ids=positions, use_cache=True
    )
    next_position = batch.prompt_lengths.clone()
    for t in range(steps):  # 3.
        logits = output.logits[:, -1, :].float()
        if greedy:  # 5.
            log_p = torch.log_softmax(logits, -1)
            choice = log_p.argmax(-1)
        else:
            log_p = torch.log_softmax(process_logits(logits, temperature, top_k, top_p), -1)  # 4.
            choice = torch.multinomial(log_p.exp(), 1, generator=generator).squeeze(-1)
        choice = torch.where(finished, torch.full_like(choice, pad_id), choice)  # 6.
        tokens[:, t] = choice
        log_probs[:, t] = torch.where(
            finished, torch.zeros_like(log_probs[:, t]), log_p.gather(-1, choice[:, None])[:, 0]
        )
        lengths += (~finished).long()
        finished |= choice == eos_id
        if bool(finished.all()) or t == steps - 1:
            break
        mask = torch.cat([mask, torch.ones((rows, 1), dtype=mask.dtype, device=device)], 1)
        output = model(  # 7.
            input_ids=choice[:, None],
            attention_mask=mask,
            position_ids=next_position[:, None],
            past_key_values=output.past_key_values,
            use_cache=True,
        )
        next_position = next_position + 1
    width = int(lengths.max()) if rows else 0
    responses = [tokens[b, : int(lengths[b])].tolist() for b in range(rows)]
    return Samples(responses, tokens[:, :width], lengths, log_probs[:, :width])


def sampling_log_softmax(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """[..., V] log pi(.) of the sampling distribution: log_softmax(logits / temperature)."""
    return torch.log_softmax(process_logits(logits.float(), temperature), -1)


def token_log_probs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0):
    """[B, R] log p(token) under log_softmax(logits / temperature) ([B, R, V] logits)."""
    return gather_tokens(sampling_log_softmax(logits, temperature), tokens)


def gather_tokens(log_p: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """[B, R] the entries of `log_p` [B, R, V] at `tokens` [B, R]."""
    return log_p.gather(-1, tokens[..., None]).squeeze(-1)


def response_log_probs(
    model, batch: Batch, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs of the batch's responses, with the temperature sampling used.

    Args:
        model: a transformers causal LM.
        batch: `pack(prompts, responses, ...)`.
        temperature: the temperature the responses were sampled with.

    Returns:
        (log_probs [B, R] with 0 after each response, response_mask [B, R]).
    """
    logits = response_logits(model, batch)
    mask = batch.response_mask
    return token_log_probs(logits, batch.responses, temperature) * mask, mask

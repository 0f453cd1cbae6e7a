"""Sampling from a causal LM: greedy, temperature, top-k and top-p, batched with left padding.

Autoregressive decoding (Radford et al. 2019; top-k: Fan et al. 2018; top-p / nucleus: Holtzman
et al. 2020):

    1. Left-pad the prompts to one width P (`batch.pack`), positions from the lengths.
    2. Run the prompts through the model once, keeping the key/value cache (a prompt repeated
       in the batch once, its cache copied).
    3. For t = 1..max_new_tokens:
    4.   logits -> `process_logits`: divide by the temperature, keep the k largest (top-k), keep
         the smallest set of tokens whose probability reaches p (top-p); the rest get -inf.
    5.   x_t = argmax (greedy) or x_t ~ softmax(processed logits) (inverse CDF, `draw`).
    6.   A row that has produced EOS is finished: it gets PAD from then on and its length stops
         growing (the EOS counts). Stop when every row is finished.
    7.   Feed x_t with the cache; the attention mask grows by one column.

`response_log_probs` scores given responses under a model with the same `process_logits`
(temperature only), so the log-probs of RL rollouts are those of the distribution they were
drawn from: sampling with top-k/top-p and scoring without them would bias the KL estimate
(InstructGPT-style RL samples with plain temperature sampling for this reason).
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

import torch

from bellman.errors import ConfigError, NonFiniteError
from bellman.lm.batch import TokenBatch, context_length, pack, response_logits


@dataclass
class Samples:
    """What `sample` returns.

    Attributes:
        responses: B lists of new ids, each ending at (and including) EOS when it was produced.
        tokens: [B, N] the same ids, PAD after each response's end.
        lengths: [B] len(responses[b]).
        log_probs: [B, N] log-probability of each sampled token under the processed
            distribution it was drawn from (0 after the end; greedy: under temperature 1).
        entropies: [B, N] entropy (nats) of each of those distributions (0 after the end).
    """

    responses: list[list[int]]
    tokens: torch.Tensor
    lengths: torch.Tensor
    log_probs: torch.Tensor
    entropies: torch.Tensor


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


def draw(
    logits: torch.Tensor,
    greedy: bool,
    generator: torch.Generator | None,
    weights: torch.Tensor | None = None,
    cumulative: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Step 5 on processed logits [B, V] (overwritten): (token [B], its log-probability [B],
    entropy [B]).

    One pass over the weights w = exp(logits - max) serves the draw, the log-probability
    log w_x - log Z and the entropy log Z - sum_v w_v (logits_v - max) / Z (Z = sum_v w_v).
    The draw inverts the cumulative weights at one uniform per row, u Z with u ~ U[0, 1): token
    x is drawn exactly when W_x-1 <= u Z < W_x (W the float64 running sum of w), with probability
    w_x / Z = softmax(logits)_x; a token of weight 0 (removed by top-k/top-p) never is. (This is
    torch.multinomial's algorithm with replacement; its one-sample path races B x V exponential
    draws instead, several times slower on CPU.) `weights` [B, V] and `cumulative` [B, V]
    float64, when given, are buffers the loop reuses (fresh ones every token cost page faults).
    """
    best = logits.argmax(-1, keepdim=True) if greedy else None  # before any rounding
    shifted = logits.sub_(logits.amax(-1, keepdim=True))  # <= 0; -inf on removed tokens
    weights = torch.exp(shifted, out=weights)
    cumulative = torch.cumsum(weights, -1, dtype=torch.float64, out=cumulative)
    total = cumulative[:, -1:]
    if best is not None:
        choice = best
    else:
        uniform = torch.rand(total.shape, dtype=torch.float64, device=total.device,
                             generator=generator)  # fmt: skip
        # u Z < Z always (u Z could round up to Z): the search ends at a token of weight > 0
        target = torch.minimum(uniform * total, total.nextafter(torch.zeros_like(total)))
        choice = torch.searchsorted(cumulative, target, right=True)
    log_total = total.log().to(logits.dtype)
    shifted.clamp_(min=torch.finfo(shifted.dtype).min)  # w_v (logits_v - max) is 0, not NaN
    log_p = shifted.gather(-1, choice) - log_total
    spread = torch.bmm(weights[:, None, :], shifted[:, :, None])[:, :, 0]  # sum_v w_v shifted_v
    entropy = log_total - spread / total.to(logits.dtype)
    return choice[:, 0], log_p[:, 0], entropy[:, 0]


@functools.cache
def _cache_keyword(model_class: type) -> str:
    parameters = inspect.signature(model_class.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def cache_keyword(model) -> str:
    """The name under which the model takes its key/value cache and returns it in its output:
    `cache` since transformers 5 renamed it (`past_key_values` still works there, with a
    FutureWarning at every call, and goes in 5.40), `past_key_values` in earlier releases."""
    return _cache_keyword(type(model))


def prefill(model, prompts: list[list[int]], batch: TokenBatch):
    """Step 2: the packed prompts through the model once, keeping the key/value cache; only the
    last column goes through the output layer. A prompt that several rows share (the G
    responses of an RL group) goes through once, and its cache and logits are copied to its
    other rows (a row's numbers depend on its own tokens only).

    Returns:
        (logits [B, 1, V], the cache).
    """
    distinct: dict[tuple[int, ...], int] = {}
    source = [distinct.setdefault(tuple(prompt), len(distinct)) for prompt in prompts]
    shared = len(distinct) < len(prompts)
    keep = slice(None)
    if shared:  # the first row of each distinct prompt
        keep = torch.tensor([source.index(d) for d in range(len(distinct))],
                            device=batch.input_ids.device)  # fmt: skip
    output = model(
        input_ids=batch.input_ids[keep], attention_mask=batch.attention_mask[keep],
        position_ids=batch.position_ids[keep], use_cache=True, logits_to_keep=1,
    )  # fmt: skip
    logits, cache = output.logits, getattr(output, cache_keyword(model))
    if not shared:
        return logits, cache
    index = torch.tensor(source, device=logits.device)
    cache.reorder_cache(index)  # row b of the cache <- row source[b]
    return logits[index], cache


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
        NonFiniteError: the model's logits are NaN or infinite (broken weights).
    """
    check_sampling(temperature, top_k, top_p)
    device = next(model.parameters()).device
    context = context_length(model)
    cache_name = cache_keyword(model)
    batch = pack(prompts, None, pad_id, device)  # 1. left padding
    room = context - batch.prompt_width
    if room <= 0:
        raise ConfigError(
            f"a prompt of {batch.prompt_width} tokens leaves no room in the model's context of "
            f"{context} tokens"
        )
    steps = min(max_new_tokens, room)
    rows, width_p = len(prompts), batch.prompt_width
    with torch.inference_mode():  # no autograd bookkeeping in the token loop
        tokens = torch.full((rows, steps), pad_id, dtype=torch.long, device=device)
        log_probs = torch.zeros((rows, steps), device=device)
        entropies = torch.zeros((rows, steps), device=device)
        lengths = torch.zeros(rows, dtype=torch.long, device=device)
        finished = torch.zeros(rows, dtype=torch.bool, device=device)
        # the attention mask of every step, allocated once: step 7 widens the view by a column
        mask = torch.ones((rows, width_p + steps), dtype=batch.attention_mask.dtype,
                          device=device)  # fmt: skip
        mask[:, :width_p] = batch.attention_mask
        last, cache = prefill(model, prompts, batch)  # 2.
        if not bool(torch.isfinite(last).all()):  # a draw from NaN would index past the vocabulary
            raise NonFiniteError("the model's next-token logits are NaN or infinite")
        next_position = batch.prompt_lengths.clone()
        pad = torch.full((rows,), pad_id, dtype=torch.long, device=device)
        weights = cumulative = None  # draw's buffers, allocated by its first call
        for t in range(steps):  # 3.
            logits = last[:, -1, :].float()
            if not greedy:  # 4.
                logits = process_logits(logits, temperature, top_k, top_p)
            choice, log_p, entropy = draw(logits, greedy, generator, weights, cumulative)  # 5.
            if weights is None:
                weights = torch.empty_like(logits)
                cumulative = torch.empty(logits.shape, dtype=torch.float64, device=device)
            live = ~finished
            choice = torch.where(finished, pad, choice)  # 6.
            tokens[:, t] = choice
            log_probs[:, t] = log_p * live
            entropies[:, t] = entropy * live
            lengths += live
            finished |= choice == eos_id
            if t == steps - 1 or bool(finished.all()):
                break
            output = model(  # 7.
                input_ids=choice[:, None], attention_mask=mask[:, : width_p + t + 1],
                position_ids=next_position[:, None], use_cache=True, **{cache_name: cache},
            )  # fmt: skip
            last, cache = output.logits, getattr(output, cache_name)
            next_position += 1
        width = int(lengths.max()) if rows else 0
        ids, counts = tokens.tolist(), lengths.tolist()
        responses = [row[:count] for row, count in zip(ids, counts, strict=True)]
    # normal tensors again (inference tensors cannot enter autograd later)
    return Samples(responses, tokens[:, :width].clone(), lengths.clone(),
                   log_probs[:, :width].clone(), entropies[:, :width].clone())  # fmt: skip


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
    model, batch: TokenBatch, temperature: float = 1.0
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

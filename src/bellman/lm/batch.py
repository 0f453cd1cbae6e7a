"""The one layout of a batch of (prompt, response) rows, and the logits read at it.

Every batch of (prompt, response) pairs has one layout, for generation, SFT, reward models and RL:

    [PAD PAD p1 p2 p3 | r1 r2 r3 PAD]        prompts left-padded to width P, responses
    [PAD p1 p2 p3 p4  | r1 EOS PAD PAD]      right-padded to width R

so response token j of every row is in column P + j and is predicted by the logits of column
P + j - 1. Attention masks and positions (0, 1, 2, ... from the first real token) come from the
lengths, never from comparing ids with PAD, and the last real token of row b is column
P + response_length_b - 1: the reward model reads its score there.

This module knows models only through their call (`response_logits`) and their config
(`context_length`), so `model.py` and `sampling.py` both build on it without importing each other
in a circle.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bellman.errors import ConfigError


@dataclass
class TokenBatch:
    """Prompts left-padded to width P, responses right-padded to width R (module docstring).

    Attributes:
        input_ids: [B, P + R] token ids (PAD where there is no token).
        attention_mask: [B, P + R] 1 on real tokens, from the lengths.
        position_ids: [B, P + R] 0, 1, 2, ... from each row's first real token.
        prompt_width: P.
        prompt_lengths: [B] real prompt tokens per row.
        response_lengths: [B] real response tokens per row.
        response_mask: [B, R] 1 on real response tokens.
        last_index: [B] column of each row's last real token (response, else prompt).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    prompt_width: int
    prompt_lengths: torch.Tensor
    response_lengths: torch.Tensor
    response_mask: torch.Tensor
    last_index: torch.Tensor

    @property
    def responses(self) -> torch.Tensor:
        """[B, R] the response ids (PAD after each response)."""
        return self.input_ids[:, self.prompt_width :]


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Positions 0, 1, ... counted over real tokens only (0 on left padding)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def pack(
    prompts: list[list[int]],
    responses: list[list[int]] | None,
    pad_id: int,
    device: str | torch.device = "cpu",
    context: int | None = None,
) -> TokenBatch:
    """The one batch layout of prompts and responses (see the module docstring).

    Args:
        prompts: B lists of prompt ids (each non-empty).
        responses: B lists of response ids (may be empty), or None for prompts alone.
        pad_id: the PAD id.
        device: where the tensors go.
        context: when given, a row longer than this raises ConfigError.
    """
    responses = responses if responses is not None else [[] for _ in prompts]
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    for b, prompt in enumerate(prompts):
        if not prompt:
            raise ConfigError(f"prompt {b} is empty: a prompt needs at least one token")
        if context is not None and len(prompt) + len(responses[b]) > context:
            raise ConfigError(
                f"prompt {b} ({len(prompt)} tokens) with its response ({len(responses[b])} "
                f"tokens) is longer than the model's context of {context} tokens"
            )
    width_p = max(len(p) for p in prompts)
    width_r = max((len(r) for r in responses), default=0)
    batch = len(prompts)
    ids = torch.full((batch, width_p + width_r), pad_id, dtype=torch.long)
    mask = torch.zeros((batch, width_p + width_r), dtype=torch.long)
    for b, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
        ids[b, width_p - len(prompt) : width_p] = torch.as_tensor(prompt, dtype=torch.long)
        mask[b, width_p - len(prompt) : width_p] = 1
        if response:
            ids[b, width_p : width_p + len(response)] = torch.as_tensor(response, dtype=torch.long)
            mask[b, width_p : width_p + len(response)] = 1
    prompt_lengths = torch.tensor([len(p) for p in prompts], dtype=torch.long)
    response_lengths = torch.tensor([len(r) for r in responses], dtype=torch.long)
    response_mask = (torch.arange(width_r)[None, :] < response_lengths[:, None]).long()
    return TokenBatch(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        position_ids=positions_from_mask(mask).to(device),
        prompt_width=width_p,
        prompt_lengths=prompt_lengths.to(device),
        response_lengths=response_lengths.to(device),
        response_mask=response_mask.to(device),
        last_index=(width_p + response_lengths - 1).to(device),
    )


def select_rows(batch: TokenBatch, rows: torch.Tensor | slice) -> TokenBatch:
    """The batch's rows `rows` in the same layout (same widths, so the same computation)."""
    return TokenBatch(
        batch.input_ids[rows], batch.attention_mask[rows], batch.position_ids[rows],
        batch.prompt_width, batch.prompt_lengths[rows], batch.response_lengths[rows],
        batch.response_mask[rows], batch.last_index[rows],
    )  # fmt: skip


def context_length(model) -> int:
    """Longest row (prompt and response together) the model takes: GPT-2's n_positions."""
    config = model.config
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1 << 30


def response_logits(model, batch: TokenBatch) -> torch.Tensor:
    """[B, R, V] the logits that predict each response token (columns P - 1 .. P + R - 2).

    Only those R columns go through the output layer (`logits_to_keep` as their indices): the
    prompt's columns and the last one would be projected to the vocabulary and thrown away."""
    width_p, width_r = batch.prompt_width, batch.responses.shape[1]
    keep = torch.arange(width_p - 1, width_p - 1 + width_r, device=batch.input_ids.device)
    return model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        use_cache=False,
        logits_to_keep=keep,
    ).logits

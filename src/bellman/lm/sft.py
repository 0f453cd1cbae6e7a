"""Supervised fine-tuning (SFT) on demonstrations, the loss on response tokens only.

Ouyang et al. 2022, "Training language models to follow instructions with human feedback"
(InstructGPT), step 1: "collect demonstration data, and train a supervised policy. Our labelers
provide demonstrations of the desired behavior on the input prompt distribution. We then
fine-tune a pretrained GPT-3 model on this data using supervised learning."

    1. Read the demonstrations (JSONL {"prompt", "response"}); tokenize each pair with
       `tokenize_pair` (prompt and response separately, EOS ends the response); hold out a
       fraction (by sha256 of the pair) to measure the held-out response loss.
    2. Start from the base language model (a pretraining run, or any causal LM directory).
    3. Repeat for `steps` steps:
    4.   sample batch_size demonstrations; `pack` them (prompts left-padded, responses right-
         padded, masks and positions from the lengths);
    5.   loss = mean over response tokens of -log pi(y_t | x, y_<t); prompt tokens and padding
         carry no loss (the model is not taught to write prompts);
    6.   clip the gradient norm, step AdamW (warmup + cosine learning rate).

Offline demonstrations (`build_demonstrations`, the `bellman lm demos` command) come from the
corpus itself: prompts are the openings of held-out documents and responses their continuations,
kept only for the documents whose continuation the judge (a reward function) rates best.
"""

from __future__ import annotations

import json
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from bellman import seeding
from bellman.config import interval
from bellman.errors import ConfigError
from bellman.lm import runs
from bellman.lm.batch import TokenBatch, pack
from bellman.lm.batch import response_logits as _response_logits
from bellman.lm.data import (
    Demonstration,
    holdout_indices,
    holdout_split,
    load_corpus,
    openings,
    read_demonstrations,
)
from bellman.lm.model import LanguageModel, config_dict
from bellman.lm.rewards import check_prompts, reward_function
from bellman.lm.runs import LMTrainConfig
from bellman.lm.tokenizer import TextTokenizer, tokenize_pair
from bellman.loop import after_iteration
from bellman.run import Run

ALGO = "lm-sft"


@dataclass(frozen=True)
class SFTConfig(LMTrainConfig):
    """Hyperparameters of supervised fine-tuning."""

    env: str = ""
    """The corpus of the base model's run (carried along for the later steps' prompts)."""
    base: str = ""
    """The model to fine-tune: an `lm pretrain` run directory or a transformers model folder."""
    data: str = ""
    """JSONL file of demonstrations, one {"prompt": ..., "response": ...} per line."""
    steps: int = field(default=300, metadata=interval("[1, inf)"))
    """Gradient steps of the run."""
    log_every: int = field(default=50, metadata=interval("[1, inf)"))
    """Steps between two rows of metrics.csv (each with the held-out response loss)."""
    checkpoint_every: int = field(default=100, metadata=interval("[1, inf)"))
    """Steps between two checkpoints."""
    batch_size: int = field(default=16, metadata=interval("[1, inf)"))
    """Demonstrations per step."""

    def validate(self) -> None:
        if not self.base:
            raise ConfigError("no base model given; `bellman lm sft RUN --data FILE`")
        if not self.data:
            raise ConfigError("no demonstrations given; pass --data FILE.jsonl")


Config = SFTConfig


# ---- demonstrations ------------------------------------------------------------------------
def build_demonstrations(
    corpus: str,
    holdout_fraction: float,
    judge: str = "sentiment",
    prompt_words: int = 4,
    response_words: int = 16,
    keep_fraction: float = 0.5,
) -> list[Demonstration]:
    """Demonstrations from the held-out side of a corpus, the judge's favourites kept.

    Args:
        corpus: the corpus spec (as `load_corpus` takes it).
        holdout_fraction: the split of the pretraining run (its held-out documents are used).
        judge: reward function that rates each continuation (`bellman.lm.rewards.REWARDS`).
        prompt_words: words of a document's opening that make the prompt.
        response_words: most words of the continuation that make the response.
        keep_fraction: fraction of the candidates kept, those rated best (ties: corpus order).
    """
    reward = reward_function(judge)
    if not 0 < keep_fraction <= 1:
        raise ConfigError(f"keep fraction must be in (0, 1], got {keep_fraction}")
    _, held = holdout_split(load_corpus(corpus).documents, holdout_fraction)
    candidates = openings(held, prompt_words, response_words)
    if not candidates:
        raise ConfigError(f"no held-out document of '{corpus}' has more than {prompt_words} words")
    check_prompts(
        judge,
        [prompt for prompt, _ in candidates],
        [f"held-out opening {i + 1} of '{corpus}'" for i in range(len(candidates))],
    )
    scores = [reward(prompt, response) for prompt, response in candidates]
    keep = sorted(range(len(candidates)), key=lambda i: -scores[i])
    keep = sorted(keep[: max(1, round(keep_fraction * len(candidates)))])
    return [Demonstration(*candidates[i]) for i in keep]


def fitting(
    demos: list[Demonstration], tokenizer: TextTokenizer, context: int
) -> list[Demonstration]:
    """The demonstrations whose prompt and response (EOS included) fit in `context` tokens."""
    pairs = [tokenize_pair(tokenizer, demo.prompt, demo.response) for demo in demos]
    return [
        demo for demo, (p, r) in zip(demos, pairs, strict=True) if p and len(p) + len(r) <= context
    ]


def check_lengths(
    pairs: list[tuple[list[int], list[int]]], lines: list[int], context: int, path: str
) -> None:
    """ConfigError naming file:line when a prompt plus its response exceeds the context."""
    for (prompt, response), line in zip(pairs, lines, strict=True):
        if len(prompt) + len(response) > context:
            raise ConfigError(
                f"{path}:{line}: prompt ({len(prompt)} tokens) and response ({len(response)} "
                f"tokens with EOS) are longer than the model's context of {context} tokens"
            )
        if not prompt:
            raise ConfigError(f"{path}:{line}: the prompt is empty")


def tokenize_demonstrations(
    tokenizer: TextTokenizer, demos: list[Demonstration], context: int, path: str
) -> list[tuple[list[int], list[int]]]:
    """Step 1: (prompt ids, response ids + EOS) of each demonstration, lengths checked."""
    pairs = [tokenize_pair(tokenizer, demo.prompt, demo.response) for demo in demos]
    check_lengths(pairs, [demo.line for demo in demos], context, path)
    return pairs


# ---- the loss --------------------------------------------------------------------------------
def sft_loss(model, batch: TokenBatch) -> torch.Tensor:
    """Step 5: mean -log pi(y_t | x, y_<t) over the real response tokens of the batch."""
    logits = _response_logits(model, batch).float()  # [B, R, V]
    nll = F.cross_entropy(logits.transpose(1, 2), batch.responses, reduction="none")  # [B, R]
    mask = batch.response_mask.float()
    return (nll * mask).sum() / mask.sum().clamp(min=1.0)


@torch.no_grad()
def held_out_sft_loss(model, pairs, pad_id: int, batch_size: int) -> float:
    """Mean response-token loss over `pairs` (model in eval mode)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        batch = pack([p for p, _ in chunk], [r for _, r in chunk], pad_id, device)
        tokens = int(batch.response_mask.sum())
        total += float(sft_loss(model, batch)) * tokens
        count += tokens
    model.train(was_training)
    return total / max(count, 1)


# ---- the training loop -----------------------------------------------------------------------
@dataclass
class SFTPrepared:
    """Steps 1-2, done before the run directory exists so that bad input writes nothing."""

    lm: LanguageModel
    train_pairs: list[tuple[list[int], list[int]]]
    held_pairs: list[tuple[list[int], list[int]]]


def prepare(config: SFTConfig) -> SFTPrepared:
    """Steps 1-2: read and tokenize the demonstrations, load the base model."""
    demos = read_demonstrations(Path(config.data))
    lm = runs.load_lm(Path(config.base), runs.resolve_device(config.device))  # 2.
    pairs = tokenize_demonstrations(lm.tokenizer, demos, lm.context, config.data)  # 1.
    if len(demos) < 2:
        raise ConfigError(f"'{config.data}' has 1 demonstration; SFT needs at least 2")
    keys = [json.dumps([demo.prompt, demo.response]) for demo in demos]
    train_idx, held_idx = holdout_indices(keys, config.holdout_fraction)
    return SFTPrepared(lm, [pairs[i] for i in train_idx], [pairs[i] for i in held_idx])


#: The JSON state an SFT checkpoint adds to `runs.training_state`'s.
STATE = {"model_config": dict, "pad_id": int, "eos_id": int}


def train(config: SFTConfig, run: Run, prepared: SFTPrepared | None = None):
    """Fine-tune the base model on the demonstrations in `run` (module docstring, steps 1-6);
    a resumed run's checkpoint is restored before anything is written; the run is closed when
    training ends."""
    torch.set_num_threads(config.torch_threads)
    with closing(run):
        device = runs.resolve_device(config.device)
        prepared = prepared or prepare(config)
        model = prepared.lm.model
        optimizer = runs.adamw(model, config.learning_rate, config.weight_decay)
        rng = seeding.seed_everything(config.seed, own_stream=True)
        step, _ = runs.restore(run, {"model/": model}, optimizer, device, rng, STATE)
        runs.copy_tokenizer(prepared.lm, run)
        _loop(config, run, prepared, optimizer, rng, step)
    return model


def _loop(config: SFTConfig, run: Run, prepared: SFTPrepared, optimizer, rng, step: int) -> None:
    """Steps 3-6 in the open run, from `step`."""
    model, tokenizer = prepared.lm.model, prepared.lm.tokenizer
    device = next(model.parameters()).device
    train_pairs, held_pairs = prepared.train_pairs, prepared.held_pairs
    held_out = lambda: held_out_sft_loss(  # noqa: E731
        model, held_pairs, tokenizer.pad_id, config.batch_size
    )
    speed = {"tokens": 0, "clock": time.perf_counter()}

    def save():
        arrays, rngs = runs.training_state({"model/": model}, optimizer, device, rng, step)
        return arrays, {"model_config": config_dict(model), "pad_id": tokenizer.pad_id,
                        "eos_id": tokenizer.eos_id, **rngs}  # fmt: skip

    def log(_evaluation) -> None:
        held = held_out()
        run.log(
            step, loss=loss.item(), held_out_loss=held, learning_rate=learning_rate,
            grad_norm=float(grad_norm),
            tokens_per_second=speed["tokens"] / (time.perf_counter() - speed["clock"]),
        )  # fmt: skip
        speed.update(tokens=0, clock=time.perf_counter())
        if step == config.steps:
            run.notes.append(f"held-out response loss: {held:.3f} nats per token")

    with run.session(step):
        if run.restored is None:
            run.log(0, loss=float("nan"), held_out_loss=held_out(), learning_rate=0.0,
                    grad_norm=float("nan"), tokens_per_second=float("nan"))  # fmt: skip
        model.train()
        speed["clock"] = time.perf_counter()
        while step < config.steps:  # 3.
            chosen = rng.choice(
                len(train_pairs), config.batch_size, replace=config.batch_size > len(train_pairs)
            )
            batch = pack(  # 4.
                [train_pairs[i][0] for i in chosen], [train_pairs[i][1] for i in chosen],
                tokenizer.pad_id, device,
            )  # fmt: skip
            loss = sft_loss(model, batch)  # 5.
            learning_rate, grad_norm = runs.adamw_step(  # 6.
                optimizer, model.parameters(), loss, step, config
            )
            step += 1
            speed["tokens"] += int(batch.attention_mask.sum())
            if after_iteration(run, step, step - 1, save=save, log=log):
                break

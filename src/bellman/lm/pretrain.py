"""Pretraining: a byte-level BPE tokenizer and a small GPT trained by next-token prediction.

Radford et al. 2018, "Improving Language Understanding by Generative Pre-Training", section 3.1:
given a corpus of tokens U = (u_1, ..., u_n), maximise the likelihood

    L_1(U) = sum_i log P(u_i | u_i-k, ..., u_i-1; Theta)

with a Transformer decoder over a context of k tokens. As bellman runs it:

    1. Read the corpus and split its documents into train and held-out sides (by sha256).
    2. Train a byte-level BPE tokenizer on the train side (vocab_size entries, PAD and EOS);
       write tokenizer.json into the run directory.
    3. Encode each side as one token stream, documents separated by EOS.
    4. Build the GPT (`model.build_gpt`) and AdamW (decay on matrices only).
    5. Repeat for `steps` steps:
    6.   sample batch_size windows of context + 1 tokens from the train stream;
    7.   loss = mean cross-entropy of token t + 1 given tokens <= t (= -L_1 per token);
    8.   clip the gradient norm, step AdamW with warmup + cosine learning rate;
    9.   every log_every steps: held-out perplexity exp(mean cross-entropy) on fixed windows
         of the held-out stream; every checkpoint_every steps: a checkpoint.

Deviations: windows are drawn uniformly at random (with replacement) rather than in epochs, and
may span document boundaries (the EOS between them is a target like any token), as in nanoGPT.
"""

from __future__ import annotations

import math
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bellman import seeding
from bellman.config import interval
from bellman.errors import ConfigError, check_memory
from bellman.lm import runs
from bellman.lm.data import holdout_split, load_corpus
from bellman.lm.model import build_gpt, config_dict
from bellman.lm.runs import LMTrainConfig
from bellman.lm.tokenizer import TOKENIZER_FILE, TextTokenizer, train_tokenizer
from bellman.loop import after_iteration
from bellman.run import Run

ALGO = "lm-pretrain"


@dataclass(frozen=True)
class PretrainConfig(LMTrainConfig):
    """Hyperparameters of pretraining; the model defaults are a tiny GPT-2 for 2 CPU cores."""

    env: str = ""
    """The corpus: a text file or folder, fortunes, bible or pydoc."""
    steps: int = field(default=2_000, metadata=interval("[1, inf)"))
    """Gradient steps of the run (a resumed run continues to this target)."""
    log_every: int = field(default=100, metadata=interval("[1, inf)"))
    """Steps between two rows of metrics.csv (each with a held-out perplexity)."""
    checkpoint_every: int = field(default=500, metadata=interval("[1, inf)"))
    """Steps between two checkpoints."""
    vocab_size: int = field(default=4_096, metadata=interval("[260, 1000000]"))
    """Entries of the byte-level BPE vocabulary (256 bytes and PAD, EOS included)."""
    layers: int = field(default=2, metadata=interval("[1, 64]"))
    """Transformer blocks."""
    width: int = field(default=128, metadata=interval("[8, 8192]"))
    """Embedding width d_model (a multiple of heads)."""
    heads: int = field(default=4, metadata=interval("[1, 128]"))
    """Attention heads per block."""
    context: int = field(default=128, metadata=interval("[8, 65536]"))
    """Longest sequence in tokens (the model's positions; prompt and response together)."""
    dropout: float = field(default=0.1, metadata=interval("[0, 1)"))
    """Dropout of embeddings, attention and residuals (off when sampling and in RL)."""
    batch_size: int = field(default=32, metadata=interval("[1, inf)"))
    """Windows of context + 1 tokens per step."""
    learning_rate: float = field(default=1e-3, metadata=interval("(0, 1]"))
    """Peak AdamW step size (after warmup; cosine decay to min_lr_fraction of it)."""
    warmup_steps: int = field(default=100, metadata=interval("[0, inf)"))
    """Steps of linear learning-rate warmup."""
    weight_decay: float = field(default=0.1, metadata=interval("[0, inf)"))
    """AdamW weight decay of the weight matrices."""
    eval_tokens: int = field(default=16_384, metadata=interval("[16, inf)"))
    """Held-out tokens behind each perplexity (the first ones of the held-out stream)."""

    def validate(self) -> None:
        if self.width % self.heads:
            raise ConfigError(
                f"width = {self.width} must be a multiple of heads = {self.heads} "
                f"(e.g. width = {self.heads * max(1, round(self.width / self.heads))})"
            )


Config = PretrainConfig


# ---- steps of the algorithm ----------------------------------------------------------------
def token_stream(tokenizer: TextTokenizer, documents: list[str]) -> np.ndarray:
    """Step 3: the documents' ids, each followed by EOS, as one int64 array."""
    ids: list[int] = []
    for document in tokenizer.encode_batch(documents):
        ids.extend(document)
        ids.append(tokenizer.eos_id)
    return np.asarray(ids, dtype=np.int64)


def sample_windows(stream: np.ndarray, batch_size: int, length: int, rng: np.random.Generator):
    """Step 6: (inputs, targets), each [B, length]: random windows and the same shifted by one."""
    starts = rng.integers(0, len(stream) - length, size=batch_size)
    windows = stream[starts[:, None] + np.arange(length + 1)]
    return torch.from_numpy(windows[:, :-1]), torch.from_numpy(windows[:, 1:])


def next_token_loss(model, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Step 7: mean cross-entropy of each target token given the tokens up to it."""
    logits = model(input_ids=inputs, use_cache=False).logits
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


@torch.no_grad()
def held_out_loss(model, stream: np.ndarray, context: int, tokens: int, batch_size: int) -> float:
    """Step 9: mean next-token cross-entropy (nats) over consecutive windows of the first
    `tokens` tokens of the held-out stream (the same windows every time)."""
    stream = stream[: tokens + 1]
    length = min(context, len(stream) - 1)
    starts = np.arange(0, len(stream) - length, length)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for chunk in range(0, len(starts), batch_size):
        windows = stream[starts[chunk : chunk + batch_size, None] + np.arange(length + 1)]
        windows = torch.from_numpy(windows).to(device)
        loss = next_token_loss(model, windows[:, :-1], windows[:, 1:])
        total += float(loss) * windows[:, 1:].numel()
        count += windows[:, 1:].numel()
    model.train(was_training)
    return total / count


def perplexity(loss: float) -> float:
    """exp(loss), capped to stay finite."""
    return math.exp(min(loss, 700.0))


# ---- the training loop -----------------------------------------------------------------------
@dataclass
class PretrainPrepared:
    """Steps 1-3, done before the run directory exists so that bad input writes nothing."""

    tokenizer: TextTokenizer
    train_stream: np.ndarray
    held_stream: np.ndarray


def training_bytes(config: PretrainConfig) -> tuple[int, int]:
    """(parameters, bytes) of one training step of the config's GPT, roughly: float32 weights,
    gradients and AdamW's two moments (16 bytes a parameter), and the activations autograd keeps
    for one batch: about 68 d + 10 heads T bytes a token and layer in float32 (twice the 16-bit
    34 d + 5 heads T of Korthikanti et al. 2022) and the [B, T, V] logits three times over."""
    d, vocab, context, layers = config.width, config.vocab_size, config.context, config.layers
    parameters = (vocab + context) * d + layers * (12 * d * d + 13 * d) + 2 * d
    per_token = layers * (68 * d + 10 * config.heads * context) + 12 * vocab
    return parameters, 16 * parameters + config.batch_size * context * per_token


def check_size(config: PretrainConfig) -> None:
    """Refuse, before anything is built, a GPT that cannot train in this machine's memory (the
    weights alone when it trains on a GPU: they are made on the CPU first)."""
    parameters, needed = training_bytes(config)
    if runs.resolve_device(config.device).type != "cpu":
        needed = 4 * parameters
    check_memory(
        needed,
        f"pretraining a GPT of {parameters:,} parameters (width {config.width}, {config.layers} "
        f"layers, context {config.context}, batch_size {config.batch_size})",
        "lower width, layers, context or batch_size",
    )


def prepare(config: PretrainConfig, tokenizer_path: Path | None = None) -> PretrainPrepared:
    """Steps 1-3: corpus and split, tokenizer (trained, or read from `tokenizer_path` when a
    run resumes), token streams; first of all, whether the model fits in memory.

    Raises:
        ConfigError: the model does not fit; the corpus is missing, empty or too small for the
            context.
    """
    check_size(config)
    # 1. corpus and split
    corpus = load_corpus(config.env)
    train_docs, held_docs = holdout_split(corpus.documents, config.holdout_fraction)
    # 2. tokenizer
    if tokenizer_path is None:
        tokenizer = train_tokenizer(train_docs, config.vocab_size)
    else:
        tokenizer = TextTokenizer.load(tokenizer_path)
    # 3. token streams
    train_stream = token_stream(tokenizer, train_docs)
    held_stream = token_stream(tokenizer, held_docs)
    if len(train_stream) <= config.context + 1 or len(held_stream) < 2:
        raise ConfigError(
            f"corpus '{config.env}' is too small: {len(train_stream)} train and "
            f"{len(held_stream)} held-out tokens for a context of {config.context}; lower "
            "context or give more text"
        )
    return PretrainPrepared(tokenizer, train_stream, held_stream)


#: The JSON state a pretraining checkpoint adds to `runs.training_state`'s.
STATE = {"model_config": dict, "pad_id": int, "eos_id": int, "initial_perplexity": float}


def train(
    config: PretrainConfig, run: Run, prepared: PretrainPrepared | None = None
) -> torch.nn.Module:
    """Pretrain a GPT on the config's corpus in `run` (steps 1-9 of the module docstring).

    Args:
        config: the run's config.
        run: the run (new, or resumed: `run.restored`); closed when training ends.
        prepared: steps 1-3 when the caller has done them (`prepare`).
    """
    torch.set_num_threads(config.torch_threads)
    with closing(run):
        device = runs.resolve_device(config.device)
        if prepared is None:
            resumed = run.restored is not None
            prepared = prepare(config, run.dir / TOKENIZER_FILE if resumed else None)  # 1.-3.
        tokenizer = prepared.tokenizer
        # 4. model and optimizer; a resumed run's checkpoint restored before anything is written
        model = build_gpt(
            tokenizer.vocab_size, config.layers, config.width, config.heads, config.context,
            config.dropout, tokenizer.pad_id, tokenizer.eos_id, config.seed,
        ).to(device)  # fmt: skip
        optimizer = runs.adamw(model, config.learning_rate, config.weight_decay)
        rng = seeding.seed_everything(config.seed, own_stream=True)
        step, state = runs.restore(run, {"model/": model}, optimizer, device, rng, STATE)
        if run.restored is None:  # written when the run directory is made
            run.on_open.append(lambda: tokenizer.save(run.dir / TOKENIZER_FILE))
        _loop(config, run, prepared, model, optimizer, rng, step, dict(state))
    return model


def _loop(config, run, prepared, model, optimizer, rng, step: int, state: dict) -> None:
    """Steps 5-9 in the open run, from `step`."""
    device = next(model.parameters()).device
    tokenizer = prepared.tokenizer
    evaluate = lambda: held_out_loss(  # noqa: E731
        model, prepared.held_stream, config.context, config.eval_tokens, config.batch_size
    )
    speed = {"tokens": 0, "clock": time.perf_counter()}

    def save():
        arrays, rngs = runs.training_state({"model/": model}, optimizer, device, rng, step)
        return arrays, {
            "model_config": config_dict(model), "pad_id": tokenizer.pad_id,
            "eos_id": tokenizer.eos_id, "initial_perplexity": state["initial_perplexity"], **rngs,
        }  # fmt: skip

    def log(_evaluation) -> None:  # 9. the held-out perplexity at every row
        held = evaluate()
        run.log(
            step, loss=loss.item(), held_out_loss=held, held_out_perplexity=perplexity(held),
            learning_rate=learning_rate, grad_norm=float(grad_norm),
            tokens_per_second=speed["tokens"] / (time.perf_counter() - speed["clock"]),
        )  # fmt: skip
        state["final_perplexity"] = perplexity(held)
        speed.update(tokens=0, clock=time.perf_counter())

    with run.session(step):
        if run.restored is None:
            state["initial_perplexity"] = perplexity(evaluate())
            held = math.log(state["initial_perplexity"])
            run.log(
                0, loss=math.nan, held_out_loss=held, held_out_perplexity=perplexity(held),
                learning_rate=0.0, grad_norm=math.nan, tokens_per_second=math.nan,
            )  # fmt: skip
        model.train()
        speed["clock"] = time.perf_counter()
        while step < config.steps:  # 5.
            inputs, targets = sample_windows(  # 6.
                prepared.train_stream, config.batch_size, config.context, rng
            )
            loss = next_token_loss(model, inputs.to(device), targets.to(device))  # 7.
            learning_rate, grad_norm = runs.adamw_step(  # 8.
                optimizer, model.parameters(), loss, step, config
            )
            step += 1
            speed["tokens"] += inputs.numel()
            if after_iteration(run, step, step - 1, save=save, log=log):  # 9.
                break
    if not run.stop_requested:
        final = state.get("final_perplexity", perplexity(evaluate()))
        run.notes.append(
            f"held-out perplexity: {final:.2f} (untrained: {state['initial_perplexity']:.1f}, "
            f"vocabulary: {tokenizer.vocab_size} tokens)"
        )

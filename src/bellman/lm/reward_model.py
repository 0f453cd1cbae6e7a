"""The reward model: a scalar r(x, y) trained on ranked comparisons, and the labelling step.

Ouyang et al. 2022 (InstructGPT), section 3.5: labelers rank K responses to a prompt; every one
of the C(K, 2) pairs is a comparison, and the reward model r_theta minimises

    loss(theta) = -1 / C(K, 2) * E_(x, y_w, y_l)~D [log sigmoid(r_theta(x, y_w) - r_theta(x, y_l))]

"we train on all C(K, 2) comparisons from each prompt as a single batch element ... [which]
only requires a single forward pass of the RM for each completion (rather than C(K, 2) forward
passes for K completions)". As bellman runs it:

    1. Read the comparisons (JSONL {"prompt", "responses": [best..worst], "scores"?}); hold out a
       fraction of the prompts (by sha256 of the prompt).
    2. r_theta = the base model's transformer (output layer removed) + a linear head that reads
       the hidden state of each sequence's last real token (`model.RewardModel`).
    3. Repeat for `steps` steps:
    4.   sample `batch_prompts` prompts; `pack` all their responses (each prompt's K responses
         go through the model once);
    5.   for every prompt, every pair (w ranked above l): -log sigmoid(r_w - r_l); average over
         the prompt's pairs, then over the prompts (the 1 / C(K, 2) of the paper);
    6.   clip, step AdamW.
    7. Report the held-out pairwise accuracy: the fraction of held-out pairs with r_w > r_l.

Deviation: when a comparison carries the judge's scores, pairs the judge scored equal are left
out (they carry no preference).

Labelling (`label_comparisons`, `bellman lm label`): sample K responses per prompt from a model,
rank them with a rule-based judge, write the ranking: the InstructGPT protocol with a judge whose
preferences are known.
"""

from __future__ import annotations

import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from bellman import checkpoint, seeding
from bellman.config import interval
from bellman.errors import CheckpointError, ConfigError
from bellman.lm import runs
from bellman.lm.batch import TokenBatch, pack
from bellman.lm.data import (
    Comparison,
    held_out_prompts,  # noqa: F401  (labelling's prompts; imported from here by the tour)
    holdout_indices,
    read_comparisons,
)
from bellman.lm.model import (
    LanguageModel,
    RewardModel,
    config_dict,
    load_model_arrays,
    model_from_config_dict,
)
from bellman.lm.rewards import check_prompts, judge_rank, reward_function
from bellman.lm.runs import LMTrainConfig
from bellman.lm.tokenizer import TOKENIZER_FILE, TextTokenizer, tokenize_pair
from bellman.loop import after_iteration
from bellman.run import Run

ALGO = "lm-reward"


@dataclass(frozen=True)
class RewardConfig(LMTrainConfig):
    """Hyperparameters of reward-model training."""

    env: str = ""
    """The corpus of the base model's run (carried along for the later steps' prompts)."""
    base: str = ""
    """The model whose transformer starts the reward model: an `lm sft` (or pretrain) run
    directory or a transformers model folder."""
    data: str = ""
    """JSONL file of comparisons: {"prompt": ..., "responses": [best, ..., worst]} per line."""
    steps: int = field(default=300, metadata=interval("[1, inf)"))
    """Gradient steps of the run."""
    log_every: int = field(default=50, metadata=interval("[1, inf)"))
    """Steps between two rows of metrics.csv (each with the held-out accuracy)."""
    checkpoint_every: int = field(default=100, metadata=interval("[1, inf)"))
    """Steps between two checkpoints."""
    batch_prompts: int = field(default=8, metadata=interval("[1, inf)"))
    """Prompts per step (all K responses of each, all C(K, 2) pairs)."""
    holdout_fraction: float = field(default=0.2, metadata=interval("(0, 0.5]"))
    """Fraction of the prompts held out for the pairwise accuracy."""

    def validate(self) -> None:
        if not self.base:
            raise ConfigError("no base model given; `bellman lm reward RUN --data FILE`")
        if not self.data:
            raise ConfigError("no comparisons given; pass --data FILE.jsonl")


Config = RewardConfig


# ---- inputs, pairs and the loss ----------------------------------------------------------------
@dataclass
class TokenizedComparison:
    """A comparison's ids: one prompt, K responses best first (EOS ended), judge scores."""

    prompt: list[int]
    responses: list[list[int]]
    scores: tuple[float, ...] | None


def reward_inputs(
    tokenizer: TextTokenizer,
    prompts: list[str],
    responses: list[str],
    device: str | torch.device = "cpu",
    context: int | None = None,
    cut_to: int | None = None,
) -> TokenBatch:
    """The one way texts become reward-model inputs (training, evaluation and RL): each pair
    through `tokenize_pair` (EOS ends the response), then `pack`; a pair longer than `context`
    raises ConfigError. With `cut_to` (RL's rollouts: a response that ran to the policy's
    context has no room left for EOS), a longer pair's response is cut at its end instead, so
    the reward model reads the first `cut_to` tokens."""
    pairs = [tokenize_pair(tokenizer, p, r) for p, r in zip(prompts, responses, strict=True)]
    if cut_to is not None:
        pairs = [(p, r[: max(0, cut_to - len(p))]) for p, r in pairs]
    return pack([p for p, _ in pairs], [r for _, r in pairs], tokenizer.pad_id, device, context)


def tokenize_comparisons(
    tokenizer: TextTokenizer, comparisons: list[Comparison], context: int, path: str
) -> list[TokenizedComparison]:
    """Step 1: ids of every comparison; a too long prompt + response is an error at file:line."""
    result = []
    for comparison in comparisons:
        ids = [tokenize_pair(tokenizer, comparison.prompt, r) for r in comparison.responses]
        for prompt, response in ids:
            if not prompt:
                raise ConfigError(f"{path}:{comparison.line}: the prompt is empty")
            if len(prompt) + len(response) > context:
                raise ConfigError(
                    f"{path}:{comparison.line}: prompt ({len(prompt)} tokens) and a response "
                    f"({len(response)} tokens with EOS) are longer than the model's context of "
                    f"{context} tokens"
                )
        result.append(TokenizedComparison(ids[0][0], [r for _, r in ids], comparison.scores))
    return result


def comparison_pairs(
    comparisons: list[TokenizedComparison],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(winner, loser, prompt) index tensors over the flattened responses of `comparisons`:
    every pair i < j of each ranking, unless the judge scored them equal."""
    winners, losers, prompts = [], [], []
    offset = 0
    for number, comparison in enumerate(comparisons):
        k = len(comparison.responses)
        for i in range(k):
            for j in range(i + 1, k):
                if comparison.scores is None or comparison.scores[i] != comparison.scores[j]:
                    winners.append(offset + i)
                    losers.append(offset + j)
                    prompts.append(number)
        offset += k
    as_long = lambda values: torch.tensor(values, dtype=torch.long)  # noqa: E731
    return as_long(winners), as_long(losers), as_long(prompts)


def preference_loss(
    scores: torch.Tensor, winners: torch.Tensor, losers: torch.Tensor, prompts: torch.Tensor
) -> torch.Tensor:
    """Step 5: mean over prompts of the mean over their pairs of -log sigmoid(r_w - r_l).

    Args:
        scores: [N] r(x, y) of every response.
        winners, losers: [P] indices into `scores` of each pair's preferred and other response.
        prompts: [P] the prompt each pair belongs to.
    """
    pair_losses = -F.logsigmoid(scores[winners] - scores[losers])
    _, group, counts = torch.unique(prompts, return_inverse=True, return_counts=True)
    weights = 1.0 / counts[group].to(pair_losses.dtype)
    return (pair_losses * weights).sum() / counts.numel()


def score_comparisons(reward_model, comparisons: list[TokenizedComparison], pad_id: int):
    """Step 4: [N] scores of all responses of `comparisons`, in one batch."""
    device = next(reward_model.parameters()).device
    prompts = [c.prompt for c in comparisons for _ in c.responses]
    responses = [r for c in comparisons for r in c.responses]
    return reward_model(pack(prompts, responses, pad_id, device))


@torch.no_grad()
def pairwise_accuracy(
    reward_model, comparisons: list[TokenizedComparison], pad_id: int, batch_prompts: int
) -> tuple[float, float]:
    """Step 7: (accuracy, loss) over every pair of `comparisons`: accuracy is the fraction of
    pairs with r_w > r_l."""
    was_training = reward_model.training
    reward_model.eval()
    right, pairs, loss_sum = 0, 0, 0.0
    for start in range(0, len(comparisons), batch_prompts):
        chunk = comparisons[start : start + batch_prompts]
        winners, losers, prompts = comparison_pairs(chunk)
        if len(winners) == 0:
            continue
        scores = score_comparisons(reward_model, chunk, pad_id)
        right += int((scores[winners] > scores[losers]).sum())
        pairs += len(winners)
        loss_sum += float(-F.logsigmoid(scores[winners] - scores[losers]).sum())
    reward_model.train(was_training)
    return (right / pairs, loss_sum / pairs) if pairs else (float("nan"), float("nan"))


# ---- loading a trained reward model ------------------------------------------------------------
def load_reward_model(run_dir: Path, device: str | torch.device = "cpu"):
    """(RewardModel, tokenizer) of an `lm reward` run's latest checkpoint."""
    run_dir = Path(run_dir)
    values = runs.run_values(run_dir)
    if values["algo"] != ALGO:
        raise CheckpointError(f"run '{run_dir}' is a {values['algo']} run, not a reward model")
    arrays, meta = checkpoint.load(run_dir / "checkpoints", algo=ALGO)
    state = meta["state"]
    backbone = model_from_config_dict(state["model_config"], backbone_only=True)
    reward_model = RewardModel(backbone, backbone.config.hidden_size)
    load_model_arrays(reward_model, arrays, "model/", f"run '{run_dir}'")
    tokenizer = TextTokenizer.load(
        run_dir / TOKENIZER_FILE, pad_id=state.get("pad_id"), eos_id=state.get("eos_id")
    )
    return reward_model.to(device), tokenizer


# ---- the training loop -----------------------------------------------------------------------
@dataclass
class RewardPrepared:
    """Steps 1-2's inputs, made before the run directory exists so that bad input writes
    nothing."""

    lm: LanguageModel
    train_data: list[TokenizedComparison]
    held_data: list[TokenizedComparison]


def prepare(config: RewardConfig) -> RewardPrepared:
    """Step 1 and the base model of step 2: comparisons read, tokenized and split."""
    comparisons = read_comparisons(Path(config.data))
    lm = runs.load_lm(Path(config.base), runs.resolve_device(config.device))
    data = tokenize_comparisons(lm.tokenizer, comparisons, lm.context, config.data)
    if len(data) < 2:
        raise ConfigError(
            f"'{config.data}' has 1 comparison; training and the held-out accuracy need at least 2"
        )
    train_idx, held_idx = holdout_indices([c.prompt for c in comparisons], config.holdout_fraction)
    return RewardPrepared(lm, [data[i] for i in train_idx], [data[i] for i in held_idx])


#: The JSON state a reward-model checkpoint adds to `runs.training_state`'s.
STATE = {"model_config": dict, "pad_id": int, "eos_id": int}


def train(config: RewardConfig, run: Run, prepared: RewardPrepared | None = None) -> RewardModel:
    """Train a reward model on the comparisons in `run` (module docstring, steps 1-7); a
    resumed run's checkpoint is restored before anything is written; the run is closed when
    training ends."""
    torch.set_num_threads(config.torch_threads)
    with closing(run):
        device = runs.resolve_device(config.device)
        prepared = prepared or prepare(config)  # 1.
        prepared.lm.model.config.use_cache = False
        with torch.random.fork_rng(devices=[]):  # the head's initial weights follow the seed
            torch.manual_seed(config.seed)
            reward_model = RewardModel.from_lm(prepared.lm.model).to(device)  # 2.
        optimizer = runs.adamw(reward_model, config.learning_rate, config.weight_decay)
        rng = seeding.seed_everything(config.seed, own_stream=True)
        step, _ = runs.restore(run, {"model/": reward_model}, optimizer, device, rng, STATE)
        runs.copy_tokenizer(prepared.lm, run)
        _loop(config, run, prepared, reward_model, optimizer, rng, step)
    return reward_model


def _loop(config, run, prepared: RewardPrepared, reward_model, optimizer, rng, step) -> None:
    """Steps 3-7 in the open run, from `step`."""
    tokenizer = prepared.lm.tokenizer
    train_data, held_data = prepared.train_data, prepared.held_data
    device = next(reward_model.parameters()).device
    held_out = lambda: pairwise_accuracy(  # noqa: E731
        reward_model, held_data, tokenizer.pad_id, config.batch_prompts
    )
    speed = {"tokens": 0, "clock": time.perf_counter()}

    def save():
        arrays, rngs = runs.training_state({"model/": reward_model}, optimizer, device, rng, step)
        return arrays, {"model_config": config_dict(reward_model.backbone),
                        "pad_id": tokenizer.pad_id, "eos_id": tokenizer.eos_id, **rngs}  # fmt: skip

    def log(_evaluation) -> None:  # 7.
        accuracy, held_loss = held_out()
        run.log(
            step, loss=loss.item(), held_out_loss=held_loss, held_out_accuracy=accuracy,
            learning_rate=learning_rate, grad_norm=float(grad_norm),
            tokens_per_second=speed["tokens"] / (time.perf_counter() - speed["clock"]),
        )  # fmt: skip
        speed.update(tokens=0, clock=time.perf_counter())
        if step == config.steps:
            run.notes.append(f"held-out pairwise accuracy: {accuracy:.3f} "
                             f"({len(held_data)} prompts, chance 0.5)")  # fmt: skip

    with run.session(step):
        if run.restored is None:
            accuracy, held_loss = held_out()
            nan = float("nan")
            run.log(0, loss=nan, held_out_loss=held_loss, held_out_accuracy=accuracy,
                    learning_rate=0.0, grad_norm=nan, tokens_per_second=nan)  # fmt: skip
        reward_model.train()
        speed["clock"] = time.perf_counter()
        while step < config.steps:  # 3.
            chosen = rng.choice(
                len(train_data), config.batch_prompts,
                replace=config.batch_prompts > len(train_data),
            )  # fmt: skip
            chunk = [train_data[i] for i in chosen]
            winners, losers, prompts = comparison_pairs(chunk)
            scores = score_comparisons(reward_model, chunk, tokenizer.pad_id)  # 4.
            if len(winners):
                loss = preference_loss(scores, winners.to(device), losers.to(device),
                                       prompts.to(device))  # 5. # fmt: skip
            else:  # every pair a tie: nothing to learn from this batch
                loss = scores.sum() * 0.0
            learning_rate, grad_norm = runs.adamw_step(  # 6.
                optimizer, reward_model.parameters(), loss, step, config
            )
            step += 1
            speed["tokens"] += sum(len(c.prompt) * len(c.responses) + sum(map(len, c.responses))
                                   for c in chunk)  # fmt: skip
            if after_iteration(run, step, step - 1, save=save, log=log):
                break


# ---- labelling ---------------------------------------------------------------------------------
def prompts_with_room(
    prompts: list[str], tokenizer: TextTokenizer, context: int, where: list[str]
) -> list[tuple[str, list[int]]]:
    """(text, ids) of each prompt, checked to be non-empty and to leave room for a response.

    Raises:
        ConfigError: naming `where[i]` of the first prompt that does not fit.
    """
    ids = tokenizer.encode_batch(list(prompts))
    for text, tokens, place in zip(prompts, ids, where, strict=True):
        if not tokens:
            raise ConfigError(f"{place}: the prompt is empty")
        if len(tokens) >= context:
            raise ConfigError(
                f"{place}: the prompt {text[:40]!r} is {len(tokens)} tokens long; the model's "
                f"context of {context} tokens leaves no room for a response"
            )
    return list(zip(prompts, ids, strict=True))


def label_comparisons(
    lm,
    prompts: list[str],
    k: int,
    judge: str,
    *,
    max_new_tokens: int = 24,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 64,
    where: list[str] | None = None,
) -> tuple[list[dict], int]:
    """Sample K responses per prompt, rank them with the judge, best first.

    Args:
        where: for each prompt, where it came from (for errors; default "prompt N").

    Returns:
        (records for the JSONL file, number of prompts skipped because the judge scored all K
        responses equal).

    Raises:
        ConfigError: K < 2, a prompt the judge cannot score, empty or leaving no room.
    """
    from bellman.lm.sampling import sample

    if k < 2:
        raise ConfigError(f"--k must be at least 2 (a ranking needs two responses), got {k}")
    reward = reward_function(judge)
    where = where or [f"prompt {i + 1}" for i in range(len(prompts))]
    check_prompts(judge, prompts, where)
    prompt_ids = [ids for _, ids in prompts_with_room(prompts, lm.tokenizer, lm.context, where)]
    generator = torch.Generator(device=lm.device).manual_seed(seed)
    lm.model.eval()
    rows = [i for i in range(len(prompts)) for _ in range(k)]
    texts: list[str] = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        result = sample(
            lm.model, [prompt_ids[i] for i in chunk], max_new_tokens=max_new_tokens,
            eos_id=lm.tokenizer.eos_id, pad_id=lm.tokenizer.pad_id, temperature=temperature,
            generator=generator,
        )  # fmt: skip
        texts.extend(lm.tokenizer.decode(ids) for ids in result.responses)
    records, skipped = [], 0
    for number, prompt in enumerate(prompts):
        responses = texts[number * k : (number + 1) * k]
        order, scores = judge_rank(prompt, responses, reward)
        if scores[order[0]] == scores[order[-1]]:
            skipped += 1
            continue
        records.append({
            "prompt": prompt, "responses": [responses[i] for i in order],
            "scores": [scores[i] for i in order],
        })  # fmt: skip
    return records, skipped

"""Direct Preference Optimization: the reward model's comparisons, without a reward model or RL.

Rafailov, Sharma, Mitchell, Ermon, Manning and Finn 2023, "Direct Preference Optimization: Your
Language Model is Secretly a Reward Model", equation (7): the policy pi_theta is trained on the
preference pairs with the frozen reference pi_ref (the SFT model) by

    L_DPO = -E_(x, y_w, y_l)~D [log sigmoid(beta log pi_theta(y_w|x) / pi_ref(y_w|x)
                                           - beta log pi_theta(y_l|x) / pi_ref(y_l|x))]

that is, the reward model's loss -log sigmoid(r(x, y_w) - r(x, y_l)) with the implicit reward
r(x, y) = beta log pi_theta(y|x) / pi_ref(y|x). As bellman runs it:

    1. Read the comparisons (the JSONL of `bellman lm reward`: a prompt, K responses best first)
       and split off held-out prompts (by sha256 of the prompt), as the reward model does.
    2. pi_theta and pi_ref both start as the SFT model; pi_ref is frozen.
    3. Repeat for `steps` steps:
    4.   sample `batch_prompts` prompts; `pack` all their responses; log pi(y|x) = the sum of the
         response tokens' log-probs (EOS included) under pi_theta and under pi_ref;
    5.   implicit rewards r = beta (log pi_theta - log pi_ref); for every pair (w ranked above l)
         -log sigmoid(r_w - r_l), averaged over each prompt's C(K, 2) pairs, then over prompts
         (`reward_model.preference_loss`, the same weighting as the reward model's);
    6.   clip the gradient norm, step AdamW (warmup + cosine learning rate).
    7. Report on the held-out prompts: preference accuracy (fraction of pairs with r_w > r_l),
       the mean reward margin r_w - r_l, the mean chosen and rejected rewards.

Deviations: dropout is off (the model stays in eval mode), so at step 0 pi_theta = pi_ref exactly
and the loss is log 2; pairs the judge scored equal are left out, as for the reward model.
"""

from __future__ import annotations

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
from bellman.lm.batch import pack
from bellman.lm.data import holdout_indices, read_comparisons
from bellman.lm.model import LanguageModel, config_dict
from bellman.lm.reward_model import (
    TokenizedComparison,
    comparison_pairs,
    preference_loss,
    tokenize_comparisons,
)
from bellman.lm.runs import LMTrainConfig
from bellman.lm.sampling import response_log_probs
from bellman.loop import after_iteration
from bellman.run import Run

ALGO = "lm-dpo"


@dataclass(frozen=True)
class DPOConfig(LMTrainConfig):
    """Hyperparameters of DPO (beta: the paper's 0.1)."""

    env: str = ""
    """The corpus of the base model's run (carried along)."""
    base: str = ""
    """The SFT model (pi_theta's start, the frozen pi_ref): an lm run or a transformers folder."""
    data: str = ""
    """JSONL file of comparisons: {"prompt": ..., "responses": [best, ..., worst]} per line."""
    beta: float = field(default=0.1, metadata=interval("(0, inf)"))
    """Strength of the implicit KL constraint: r = beta log pi_theta / pi_ref."""
    steps: int = field(default=300, metadata=interval("[1, inf)"))
    """Gradient steps of the run."""
    log_every: int = field(default=50, metadata=interval("[1, inf)"))
    """Steps between two rows of metrics.csv (each with the held-out accuracy)."""
    checkpoint_every: int = field(default=100, metadata=interval("[1, inf)"))
    """Steps between two checkpoints."""
    batch_prompts: int = field(default=8, metadata=interval("[1, inf)"))
    """Prompts per step (all K responses of each, all C(K, 2) pairs)."""
    learning_rate: float = field(default=1e-4, metadata=interval("(0, 1]"))
    """Peak AdamW step size."""
    holdout_fraction: float = field(default=0.2, metadata=interval("(0, 0.5]"))
    """Fraction of the prompts held out for the preference accuracy."""

    def validate(self) -> None:
        if not self.base:
            raise ConfigError("no SFT model given; `bellman lm dpo SFT_RUN --data FILE`")
        if not self.data:
            raise ConfigError("no comparisons given; pass --data FILE.jsonl")


Config = DPOConfig


# ---- the loss ----------------------------------------------------------------------------------
def sequence_log_probs(model, comparisons: list[TokenizedComparison], pad_id: int):
    """Step 4: [N] log pi(y | x) of every response of `comparisons` (summed over its tokens,
    EOS included), all in one batch."""
    device = next(model.parameters()).device
    prompts = [c.prompt for c in comparisons for _ in c.responses]
    responses = [r for c in comparisons for r in c.responses]
    log_probs, _ = response_log_probs(model, pack(prompts, responses, pad_id, device))
    return log_probs.sum(-1)


def implicit_rewards(policy_log_probs: torch.Tensor, ref_log_probs: torch.Tensor, beta: float):
    """Step 5: r(x, y) = beta (log pi_theta(y|x) - log pi_ref(y|x)), [N]."""
    return beta * (policy_log_probs - ref_log_probs)


def dpo_loss(
    policy_log_probs: torch.Tensor,
    ref_log_probs: torch.Tensor,
    winners: torch.Tensor,
    losers: torch.Tensor,
    prompts: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Step 5: the mean over prompts of the mean over their pairs of
    -log sigmoid(beta [(log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))]).

    Args:
        policy_log_probs, ref_log_probs: [N] sequence log-probs of every response.
        winners, losers, prompts: [P] the pairs (`reward_model.comparison_pairs`).
        beta: the DPO beta.
    """
    rewards = implicit_rewards(policy_log_probs, ref_log_probs, beta)
    return preference_loss(rewards, winners, losers, prompts)


@torch.no_grad()
def held_out_preferences(
    policy, reference, comparisons: list[TokenizedComparison], pad_id: int, config: DPOConfig
) -> dict[str, float]:
    """Step 7: held-out loss, accuracy (r_w > r_l), reward margin, chosen and rejected reward,
    means over every held-out pair."""
    right, pairs, loss, margin, chosen, rejected = 0, 0, 0.0, 0.0, 0.0, 0.0
    for start in range(0, len(comparisons), config.batch_prompts):
        chunk = comparisons[start : start + config.batch_prompts]
        winners, losers, _ = comparison_pairs(chunk)
        if len(winners) == 0:
            continue
        rewards = implicit_rewards(
            sequence_log_probs(policy, chunk, pad_id),
            sequence_log_probs(reference, chunk, pad_id), config.beta,
        )  # fmt: skip
        margins = rewards[winners] - rewards[losers]
        right += int((margins > 0).sum())
        pairs += len(winners)
        loss += float(-F.logsigmoid(margins).sum())
        margin += float(margins.sum())
        chosen += float(rewards[winners].sum())
        rejected += float(rewards[losers].sum())
    pairs_ = max(pairs, 1)
    nan = float("nan")
    return {
        "held_out_loss": loss / pairs_ if pairs else nan,
        "held_out_accuracy": right / pairs_ if pairs else nan,
        "held_out_margin": margin / pairs_ if pairs else nan,
        "held_out_chosen_reward": chosen / pairs_ if pairs else nan,
        "held_out_rejected_reward": rejected / pairs_ if pairs else nan,
    }


# ---- the training loop -------------------------------------------------------------------------
@dataclass
class DPOPrepared:
    """Steps 1-2's inputs, made before the run directory exists (bad input writes nothing)."""

    lm: LanguageModel
    reference: torch.nn.Module
    train_data: list[TokenizedComparison]
    held_data: list[TokenizedComparison]


def prepare(config: DPOConfig) -> DPOPrepared:
    """Steps 1-2: read, tokenize and split the comparisons; load pi_theta and pi_ref."""
    comparisons = read_comparisons(Path(config.data))
    device = runs.resolve_device(config.device)
    lm = runs.load_lm(Path(config.base), device)
    reference = runs.load_lm(Path(config.base), device).model.eval().requires_grad_(False)
    data = tokenize_comparisons(lm.tokenizer, comparisons, lm.context, config.data)
    if len(data) < 2:
        raise ConfigError(
            f"'{config.data}' has 1 comparison; training and the held-out accuracy need at least 2"
        )
    train_idx, held_idx = holdout_indices([c.prompt for c in comparisons], config.holdout_fraction)
    return DPOPrepared(lm, reference, [data[i] for i in train_idx], [data[i] for i in held_idx])


#: The JSON state a DPO checkpoint adds to `runs.training_state`'s.
STATE = {"model_config": dict, "pad_id": int, "eos_id": int}


def train(config: DPOConfig, run: Run, prepared: DPOPrepared | None = None) -> LanguageModel:
    """DPO on the comparisons in `run` (module docstring, steps 1-7); returns pi_theta. A
    resumed run's checkpoint is restored before anything is written; the run is closed when
    training ends."""
    torch.set_num_threads(config.torch_threads)
    with closing(run):
        prepared = prepared or prepare(config)  # 1.-2.
        model = prepared.lm.model
        device = next(model.parameters()).device
        model.eval()  # dropout off: pi_theta = pi_ref exactly at step 0
        optimizer = runs.adamw(model, config.learning_rate, config.weight_decay)
        rng = seeding.seed_everything(config.seed, own_stream=True)
        step, _ = runs.restore(run, {"model/": model}, optimizer, device, rng, STATE)
        runs.copy_tokenizer(prepared.lm, run)
        _loop(config, run, prepared, optimizer, rng, step)
    return prepared.lm


def _loop(config: DPOConfig, run: Run, prepared: DPOPrepared, optimizer, rng, step: int) -> None:
    """Steps 3-7 in the open run, from `step`."""
    model, reference, tokenizer = prepared.lm.model, prepared.reference, prepared.lm.tokenizer
    device = next(model.parameters()).device
    held = lambda: held_out_preferences(  # noqa: E731
        model, reference, prepared.held_data, tokenizer.pad_id, config
    )
    speed = {"tokens": 0, "clock": time.perf_counter()}

    def save():
        arrays, rngs = runs.training_state({"model/": model}, optimizer, device, rng, step)
        return arrays, {"model_config": config_dict(model), "pad_id": tokenizer.pad_id,
                        "eos_id": tokenizer.eos_id, **rngs}  # fmt: skip

    def log(_evaluation) -> None:  # 7.
        with torch.no_grad():
            rewards = implicit_rewards(policy_lp, ref_lp, config.beta)
            margins = rewards[winners] - rewards[losers]
        evaluation = held()
        run.log(
            step, loss=loss.item(), reward_margin=float(margins.mean()),
            reward_accuracy=float((margins > 0).float().mean()), **evaluation,
            learning_rate=learning_rate, grad_norm=float(grad_norm),
            tokens_per_second=speed["tokens"] / (time.perf_counter() - speed["clock"]),
        )  # fmt: skip
        speed.update(tokens=0, clock=time.perf_counter())
        if step == config.steps:
            run.notes.append(
                f"held-out preference accuracy: {evaluation['held_out_accuracy']:.3f}, "
                f"reward margin: {evaluation['held_out_margin']:.3f} "
                f"({len(prepared.held_data)} prompts, chance 0.5)"
            )

    with run.session(step):
        if run.restored is None:
            nan = float("nan")
            run.log(0, loss=nan, reward_margin=nan, reward_accuracy=nan, **held(),
                    learning_rate=0.0, grad_norm=nan, tokens_per_second=nan)  # fmt: skip
        speed["clock"] = time.perf_counter()
        train_data = prepared.train_data
        while step < config.steps:  # 3.
            chosen = rng.choice(len(train_data), config.batch_prompts,
                                replace=config.batch_prompts > len(train_data))  # fmt: skip
            chunk = [train_data[i] for i in chosen]
            winners, losers, prompts = comparison_pairs(chunk)
            policy_lp = sequence_log_probs(model, chunk, tokenizer.pad_id)  # 4.
            with torch.no_grad():
                ref_lp = sequence_log_probs(reference, chunk, tokenizer.pad_id)
            winners, losers, prompts = winners.to(device), losers.to(device), prompts.to(device)
            if len(winners):  # 5.
                loss = dpo_loss(policy_lp, ref_lp, winners, losers, prompts, config.beta)
            else:  # every pair a tie: nothing to learn from this batch
                loss = policy_lp.sum() * 0.0
            learning_rate, grad_norm = runs.adamw_step(  # 6.
                optimizer, model.parameters(), loss, step, config
            )
            step += 1
            speed["tokens"] += sum(len(c.prompt) * len(c.responses) + sum(map(len, c.responses))
                                   for c in chunk)  # fmt: skip
            if after_iteration(run, step, step - 1, save=save, log=log):
                break

"""RLHF with PPO: the InstructGPT RL step, with the per-token KL penalty, PPO-ptx and GRPO/RLOO.

Ouyang et al. 2022, "Training language models to follow instructions with human feedback"
(InstructGPT), section 3.5: "we fine-tuned the SFT model on our environment using PPO (Schulman
et al., 2017). The environment is a bandit environment which presents a random customer prompt
and expects a response to the prompt. Given the prompt and response, it produces a reward
determined by the reward model and ends the episode. In addition, we add a per-token KL penalty
from the SFT model at each token to mitigate overoptimization of the reward model. The value
function is initialized from the RM." The objective, maximised, is

    objective(phi) = E_(x,y)~D_pi_phi^RL [r_theta(x, y) - beta log(pi_phi^RL(y|x) / pi^SFT(y|x))]
                     + gamma E_x~D_pretrain [log pi_phi^RL(x)]

where gamma = 0 is "PPO" and gamma > 0 is "PPO-ptx". Ziegler et al. 2019 ("Fine-Tuning Language
Models from Human Preferences", section 2.2) and Stiennon et al. 2020 adapt beta to a target KL:

    e_t = clip(KL(pi_t, pi^SFT) / KL_target - 1, -0.2, 0.2),   beta_t+1 = beta_t (1 + K_beta e_t)

with K_beta = n / horizon for n responses per step (the form of TRL's AdaptiveKLController).
Every step of `train` follows:

    1. rollout    sample `group_size` responses to each of `batch_prompts` prompts from pi (plain
                  temperature sampling, dropout off); recompute with forward passes (in
                  minibatch-size chunks) their per-token log-probs under pi (old) and under the
                  frozen pi^SFT (reference), with the same logits processing
                  (`sampling.token_log_probs`), and V(s_t);
    2. evaluate   score(x, y) = reward_weight r_theta(x, y) (the learned reward model, its
                  inputs from `reward_model.reward_inputs`) + judge_weight judge(x, y) (a rule
                  -based reward of `lm/rewards.py`); the true judge is logged beside it;
    3. KL penalty r_t = -beta (log pi(y_t | .) - log pi^SFT(y_t | .))  (the k1 estimator) for every
                  response token, plus score(x, y) at the last real token (EOS when generated);
    4. whiten     optionally the rewards (scaled, not shifted);
    5. advantages GAE over tokens (`bellman.advantages`, gamma, lambda; the episode ends at the
                  last real token), whitened over the batch; or, critic-free, a group baseline
                  over the G responses of one prompt on the sequence reward
                  R = score - beta sum_t k1_t, the same advantage for every token of a response:
                      grpo  A_i = (R_i - mean_j R_j) / (std_j R_j + eps)   (Shao et al. 2024)
                      rloo  A_i = R_i - mean_(j != i) R_j                  (Ahmadian et al. 2024)
    6. optimise   `ppo_epochs` epochs over minibatches of responses: the clipped surrogate and
                  the clipped value loss of `bellman.losses` (means over real tokens),
                  + ptx_coef * (-log pi(x)) on `ptx_batch_size` pretraining windows; AdamW;
    7. KL control beta <- beta (1 + clip(KL / target_kl - 1, -0.2, 0.2) n / kl_horizon), KL the
                  rollout's mean over responses of sum_t k1_t (when `adaptive_kl`).

Deviations from the papers:
    - The value function is a separate model (the reward model's copy with `value_init =
      reward_model`, else the SFT transformer with a fresh head), read at every response position.
    - GRPO's paper puts a k3 KL estimator in the loss; here every `advantage` keeps the KL in the
      reward (as RLOO and PPO do), so the adaptive controller works the same for all three, and
      the critic-free variants have no value model at all.
    - The policy stays in eval mode in the optimisation too: with dropout off, the policy at the
      first minibatch is exactly the rollout policy (ratio 1) and equal to the reference at step 0
      (KL 0).
    - Held-out prompts (a fraction of the prompts) measure the true reward, the KL to the SFT
      model and the held-out perplexity of the pretraining corpus every `eval_every` steps.
"""

from __future__ import annotations

import copy
import math
import time
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from bellman import checkpoint, seeding
from bellman.advantages import generalized_advantage_estimation
from bellman.config import TrainConfig, choices, interval
from bellman.errors import ConfigError, NonFiniteError
from bellman.lm import runs
from bellman.lm.batch import TokenBatch, context_length, pack, response_logits, select_rows
from bellman.lm.data import (
    held_out_prompts,
    holdout_indices,
    holdout_split,
    load_corpus,
    read_prompts,
)
from bellman.lm.model import (
    LanguageModel,
    RewardModel,
    config_dict,
)
from bellman.lm.pretrain import held_out_loss, next_token_loss, perplexity, sample_windows
from bellman.lm.pretrain import token_stream as corpus_stream
from bellman.lm.reward_model import load_reward_model, prompts_with_room, reward_inputs
from bellman.lm.rewards import check_prompts, reward_function
from bellman.lm.sampling import sample, token_log_probs
from bellman.loop import after_iteration, crossed
from bellman.losses import approximate_kl, clipped_surrogate_loss, value_loss
from bellman.run import Run

ALGO = "lm-ppo"


@dataclass(frozen=True)
class RLHFPPOConfig(TrainConfig):
    """Hyperparameters of RLHF with PPO (defaults: InstructGPT / TRL's, scaled to 2 CPU cores)."""

    env: str = ""
    """The corpus of the base model's run: held-out openings are the prompts, its train side the
    PPO-ptx windows, its held-out side the perplexity."""
    base: str = ""
    """The SFT model (policy start and frozen reference): an lm run or a transformers folder."""
    reward_model: str = ""
    """An `lm reward` run directory: the learned reward r_theta (empty: none)."""
    judge: str = ""
    """A rule-based reward of lm/rewards.py in the objective (empty: none)."""
    reward_weight: float = field(default=1.0, metadata=interval("[0, inf)"))
    """Weight of the learned reward in score(x, y)."""
    judge_weight: float = field(default=1.0, metadata=interval("[0, inf)"))
    """Weight of the rule-based judge in score(x, y)."""
    true_judge: str = ""
    """The judge logged as reward_true (empty: `judge`, or sentiment when only a reward model is
    given)."""
    prompts: str = ""
    """JSONL file of {"prompt": ...} lines (empty: openings of the corpus's held-out documents)."""
    prompt_words: int = field(default=4, metadata=interval("[1, inf)"))
    """Words of a held-out document's opening that make a prompt (when `prompts` is empty)."""
    holdout_fraction: float = field(default=0.1, metadata=interval("(0, 0.5]"))
    """The pretraining run's held-out fraction (the CLI reads it from the base's runs)."""
    eval_fraction: float = field(default=0.2, metadata=interval("(0, 0.5]"))
    """Fraction of the prompts held out to measure the true reward before and after."""
    steps: int = field(default=100, metadata=interval("[1, inf)"))
    """PPO iterations (rollout + optimisation) of the run."""
    log_every: int = field(default=1, metadata=interval("[1, inf)"))
    """Iterations between two rows of metrics.csv."""
    eval_every: int = field(default=25, metadata=interval("[1, inf)"))
    """Iterations between two held-out evaluations (true reward, KL, perplexity)."""
    checkpoint_every: int = field(default=25, metadata=interval("[1, inf)"))
    """Iterations between two checkpoints."""
    batch_prompts: int = field(default=16, metadata=interval("[1, inf)"))
    """Prompts per rollout."""
    group_size: int = field(default=1, metadata=interval("[1, inf)"))
    """Responses per prompt (>= 2 for grpo and rloo: the group baseline)."""
    max_new_tokens: int = field(default=24, metadata=interval("[1, inf)"))
    """Longest response in tokens (EOS included)."""
    temperature: float = field(default=1.0, metadata=interval("(0, inf)"))
    """Sampling temperature of the rollouts (and of their log-probs)."""
    advantage: str = field(default="gae", metadata=choices("gae", "grpo", "rloo"))
    """gae: a value model and GAE over tokens; grpo, rloo: critic-free group baselines."""
    ppo_epochs: int = field(default=4, metadata=interval("[1, inf)"))
    """Passes over each rollout."""
    minibatch_size: int = field(default=8, metadata=interval("[1, inf)"))
    """Responses per gradient step (must divide batch_prompts * group_size)."""
    learning_rate: float = field(default=1e-4, metadata=interval("(0, 1]"))
    """AdamW step size (constant)."""
    weight_decay: float = field(default=0.0, metadata=interval("[0, inf)"))
    """AdamW weight decay of the weight matrices."""
    grad_clip: float = field(default=1.0, metadata=interval("(0, inf)"))
    """Largest gradient norm."""
    clip_range: float = field(default=0.2, metadata=interval("(0, 1]"))
    """PPO's eps of the ratio."""
    clip_range_value: float = field(default=0.2, metadata=interval("(0, inf)"))
    """Clipping of the value around the rollout's values."""
    vf_coef: float = field(default=0.1, metadata=interval("[0, inf)"))
    """Weight of the value loss."""
    gamma: float = field(default=1.0, metadata=interval("[0, 1]"))
    """Discount over response tokens."""
    lam: float = field(default=0.95, metadata=interval("[0, 1]"))
    """GAE lambda."""
    kl_coef: float = field(default=0.2, metadata=interval("[0, inf)"))
    """beta: the initial weight of the per-token KL penalty."""
    adaptive_kl: bool = True
    """Adapt beta to target_kl (Ziegler et al. 2019); false: beta stays kl_coef."""
    target_kl: float = field(default=6.0, metadata=interval("(0, inf)"))
    """KL (nats per response) the adaptive controller aims at."""
    kl_horizon: int = field(default=10_000, metadata=interval("[1, inf)"))
    """Horizon of the adaptive controller (responses)."""
    whiten_rewards: bool = False
    """Scale the per-token rewards by their batch standard deviation (step 4)."""
    whiten_advantages: bool = True
    """Standardise the GAE advantages over the batch's tokens (step 5; gae only)."""
    value_init: str = field(default="reward_model", metadata=choices("reward_model", "sft"))
    """The value model's start: the reward model (when given) or the SFT transformer."""
    ptx_coef: float = field(default=0.0, metadata=interval("[0, inf)"))
    """gamma of PPO-ptx: weight of the pretraining loss (0: plain PPO)."""
    ptx_batch_size: int = field(default=8, metadata=interval("[1, inf)"))
    """Pretraining windows (of the model's context) per gradient step when ptx_coef > 0."""
    eval_tokens: int = field(default=8_192, metadata=interval("[16, inf)"))
    """Held-out corpus tokens behind each perplexity."""
    device: str = field(default="auto", metadata=choices("auto", "cpu", "cuda"))
    """Where the models run: auto uses CUDA when present."""
    torch_threads: int = field(default=1, metadata=interval("[1, 256]"))
    """CPU threads of torch."""

    @property
    def rollout_size(self) -> int:
        """Responses per rollout."""
        return self.batch_prompts * self.group_size

    def validate(self) -> None:
        if not self.base:
            raise ConfigError("no SFT model given; `bellman lm ppo SFT_RUN --judge sentiment`")
        if not self.reward_model and not self.judge:
            raise ConfigError("no reward given; pass --reward-model RM_RUN, --judge NAME, or both")
        for name in (self.judge, self.true_judge):
            if name:
                reward_function(name)
        if self.advantage != "gae" and self.group_size < 2:
            raise ConfigError(
                f"advantage = {self.advantage} needs group_size >= 2 (a baseline from the other "
                f"responses to the same prompt), got group_size = {self.group_size}"
            )
        if self.minibatch_size > self.rollout_size or self.rollout_size % self.minibatch_size:
            raise ConfigError(
                f"minibatch_size ({self.minibatch_size}) must divide batch_prompts * group_size "
                f"({self.batch_prompts} * {self.group_size} = {self.rollout_size})"
            )


Config = RLHFPPOConfig


# ---- the pure steps ----------------------------------------------------------------------------
def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` where `mask` is 1."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True):
    """Standardise `values` over the entries where `mask` is 1 (0 elsewhere); with
    `shift_mean=False` only scaled (the mean is added back)."""
    mean = masked_mean(values, mask)
    variance = masked_mean((values - mean) ** 2, mask)
    whitened = (values - mean) * torch.rsqrt(variance + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask.to(values.dtype)


def kl_penalty(
    log_probs: torch.Tensor, ref_log_probs: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Step 3: [B, R] the k1 estimate log pi(y_t) - log pi^SFT(y_t) per real response token."""
    return (log_probs - ref_log_probs) * mask.to(log_probs.dtype)


def token_rewards(
    scores: torch.Tensor, kl: torch.Tensor, beta: float, lengths: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Step 3: [B, R] r_t = -beta k1_t on every real token, plus score [B] at the last real token
    (column lengths - 1, whatever the padding)."""
    rewards = -beta * kl * mask.to(kl.dtype)
    rows = torch.arange(len(scores), device=scores.device)
    rewards[rows, lengths - 1] += scores.to(rewards.dtype)
    return rewards


def gae_over_tokens(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 5 (gae): (advantages, returns), [B, R]: each response is one episode that ends at
    its last real token; `bellman.advantages` runs over time = token positions."""
    mask_f = mask.to(values.dtype)
    values = values * mask_f
    next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], 1) * mask_f
    next_real = torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], 1)
    end = ~next_real.bool()  # the last real token, and every padding column after it
    advantages, returns = generalized_advantage_estimation(
        rewards.T, values.T, next_values.T, end.T, end.T, gamma, lam
    )
    return advantages.T * mask_f, returns.T * mask_f


def group_advantages(rewards: torch.Tensor, group_size: int, kind: str) -> torch.Tensor:
    """Step 5 (critic-free): [N] advantages of N = prompts * G sequence rewards, the G responses
    of a prompt consecutive.

    grpo: (R_i - mean of the group) / (std of the group + 1e-4) (unbiased std, as TRL);
    rloo: R_i - mean of the other G - 1 rewards of the group.
    """
    groups = rewards.reshape(-1, group_size)
    mean = groups.mean(1, keepdim=True)
    if kind == "grpo":
        advantages = (groups - mean) / (groups.std(1, keepdim=True) + 1e-4)
    elif kind == "rloo":
        advantages = groups - (groups.sum(1, keepdim=True) - groups) / (group_size - 1)
    else:
        raise ValueError(f"unknown group advantage {kind!r}")
    return advantages.reshape(-1)


def adaptive_kl_coef(beta: float, kl: float, target: float, horizon: int, n: int) -> float:
    """Step 7: beta (1 + clip(kl / target - 1, -0.2, 0.2) n / horizon) (Ziegler et al. 2019)."""
    error = min(max(kl / target - 1.0, -0.2), 0.2)
    return beta * (1.0 + error * n / horizon)


def policy_log_probs(model, batch: TokenBatch, temperature: float) -> torch.Tensor:
    """Per-token log-probs [B, R] of the batch's responses under the temperature-processed
    distribution (0 after each response): the one computation behind old, reference and new
    log-probs (`sampling.token_log_probs`, the logits processing of the sampler)."""
    log_probs = token_log_probs(response_logits(model, batch), batch.responses, temperature)
    return log_probs * batch.response_mask


def in_chunks(score, batch: TokenBatch, rows: int) -> torch.Tensor:
    """score(batch) (no gradient), `rows` rows of the batch at a time, concatenated: every row
    computed with the shapes of an optimisation minibatch, and each chunk's activations (the
    [rows, R, V] logits above all) in memory that is reused, where the whole rollout's would be
    fresh pages every time."""
    return torch.cat([
        score(select_rows(batch, slice(start, start + rows)))
        for start in range(0, batch.input_ids.shape[0], rows)
    ])  # fmt: skip


def token_values(critic: RewardModel, batch: TokenBatch) -> torch.Tensor:
    """[B, R] V(s_t) of every response position: the critic's head on the hidden state that
    precedes response token t (column P + t - 1); 0 after each response."""
    hidden = critic.backbone(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask,
        position_ids=batch.position_ids, use_cache=False,
    ).last_hidden_state  # fmt: skip
    width_p, width_r = batch.prompt_width, batch.responses.shape[1]
    values = critic.head(hidden[:, width_p - 1 : width_p - 1 + width_r]).squeeze(-1)
    return values * batch.response_mask


# ---- what a step needs -------------------------------------------------------------------------
@dataclass
class RLHFPrepared:
    """Everything loaded and checked before the run directory exists (bad input writes nothing).

    Attributes:
        policy: the SFT model to train (with its tokenizer).
        reference: the frozen SFT model.
        reward_model: the learned reward (or None).
        train_prompts, eval_prompts: prompt texts and their ids.
        ptx_stream: train-side token stream of the corpus (PPO-ptx windows; None without ptx).
        held_stream: held-out token stream (perplexity).
    """

    policy: LanguageModel
    reference: torch.nn.Module
    reward_model: RewardModel | None
    train_prompts: list[tuple[str, list[int]]]
    eval_prompts: list[tuple[str, list[int]]]
    ptx_stream: np.ndarray | None
    held_stream: np.ndarray


def prepare(config: RLHFPPOConfig) -> RLHFPrepared:
    """Load the models, the reward and the prompts; check them.

    Raises:
        ConfigError / CheckpointError: no reward, a reward-model run that is not one (or has
            another tokenizer), a prompt that fills the context, too few prompts.
    """
    device = runs.resolve_device(config.device)
    policy = runs.load_lm(Path(config.base), device)
    reference = runs.load_lm(Path(config.base), device).model.eval().requires_grad_(False)
    reward_model = None
    if config.reward_model:
        reward_model, rm_tokenizer = load_reward_model(Path(config.reward_model), device)
        if rm_tokenizer.tokenizer.get_vocab() != policy.tokenizer.tokenizer.get_vocab():
            raise ConfigError(
                f"reward model '{config.reward_model}' has another tokenizer than the SFT model "
                f"'{config.base}'; train the reward model from the same base"
            )
        reward_model.eval().requires_grad_(False)
    if config.prompts:
        read = read_prompts(Path(config.prompts))
        texts, where = [t for t, _ in read], [f"{config.prompts}:{line}" for _, line in read]
    else:
        texts = held_out_prompts(config.env, config.holdout_fraction, config.prompt_words)
        where = [f"held-out prompt {i + 1} of '{config.env}'" for i in range(len(texts))]
    for judge in dict.fromkeys(filter(None, (config.judge, config.true_judge))):
        check_prompts(judge, texts, where)  # a judge that cannot score a prompt: refused now
    prompts = prompts_with_room(texts, policy.tokenizer, policy.context, where)
    if len(prompts) < 2:
        raise ConfigError(f"{len(prompts)} prompt(s); RL and its held-out evaluation need >= 2")
    train_idx, eval_idx = holdout_indices(texts, config.eval_fraction)
    train_docs, held_docs = holdout_split(load_corpus(config.env).documents,
                                          config.holdout_fraction)  # fmt: skip
    ptx_stream = None
    if config.ptx_coef > 0:
        ptx_stream = corpus_stream(policy.tokenizer, train_docs)
        if len(ptx_stream) <= policy.context + 1:
            raise ConfigError(f"corpus '{config.env}' is too small for PPO-ptx windows")
    held_stream = corpus_stream(policy.tokenizer, held_docs)
    return RLHFPrepared(
        policy, reference, reward_model, [prompts[i] for i in train_idx],
        [prompts[i] for i in eval_idx], ptx_stream, held_stream,
    )  # fmt: skip


@dataclass
class ResponseRollout:
    """Step 1's and 2's tensors of one batch of responses ([N, ...], N = prompts * G)."""

    batch: TokenBatch
    old_log_probs: torch.Tensor  # [N, R]
    ref_log_probs: torch.Tensor  # [N, R]
    values: torch.Tensor | None  # [N, R] (gae only)
    entropy: float
    scores: torch.Tensor  # [N] score(x, y)
    learned: torch.Tensor | None  # [N] r_theta(x, y)
    true: torch.Tensor  # [N] the true judge


@torch.no_grad()
def generate_rollout(
    policy: LanguageModel,
    reference,
    critic: RewardModel | None,
    prompts: list[tuple[str, list[int]]],
    config: RLHFPPOConfig,
    generator: torch.Generator,
) -> tuple[TokenBatch, list[str], torch.Tensor, torch.Tensor, torch.Tensor | None, float]:
    """Step 1: sample, pack, and score the responses under pi, pi^SFT and V (eval mode).

    Returns:
        (batch, response texts, old log-probs, reference log-probs, values or None, entropy).
    """
    tokenizer = policy.tokenizer
    samples = sample(
        policy.model, [ids for _, ids in prompts], max_new_tokens=config.max_new_tokens,
        eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id, temperature=config.temperature,
        generator=generator,
    )  # fmt: skip
    # a row that produced nothing (no room) still needs one token for its reward: impossible,
    # since prompts are checked to leave room; every response has at least one token.
    batch = pack([ids for _, ids in prompts], samples.responses, tokenizer.pad_id, policy.device)
    rows = config.minibatch_size
    old = in_chunks(lambda b: policy_log_probs(policy.model, b, config.temperature), batch, rows)
    ref = in_chunks(lambda b: policy_log_probs(reference, b, config.temperature), batch, rows)
    values = None if critic is None else in_chunks(partial(token_values, critic), batch, rows)
    texts = [tokenizer.decode(ids) for ids in samples.responses]
    # the mean entropy of the distributions the tokens were drawn from (the sampler's)
    entropy = samples.entropies.sum() / samples.lengths.sum().clamp(min=1)
    return batch, texts, old, ref, values, float(entropy)


@torch.no_grad()
def evaluate(
    prompts: list[str],
    responses: list[str],
    tokenizer,
    reward_model: RewardModel | None,
    config: RLHFPPOConfig,
    device,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Step 2: (score, learned reward or None, true judge), each [N]."""
    scores = torch.zeros(len(prompts), device=device)
    learned = None
    if reward_model is not None:
        context = context_length(reward_model.backbone)  # a response may fill the context
        inputs = reward_inputs(tokenizer, prompts, responses, device, cut_to=context)
        learned = in_chunks(reward_model, inputs, config.minibatch_size).float()
        scores += config.reward_weight * learned
    if config.judge:
        judge = reward_function(config.judge)
        judged = [judge(p, r) for p, r in zip(prompts, responses, strict=True)]
        scores += config.judge_weight * torch.tensor(judged, device=device)
    true_name = config.true_judge or config.judge or "sentiment"
    true = reward_function(true_name)
    true_scores = torch.tensor([true(p, r) for p, r in zip(prompts, responses, strict=True)])
    return scores, learned, true_scores


def make_critic(prepared: RLHFPrepared, config: RLHFPPOConfig) -> RewardModel | None:
    """The value model of `advantage = gae`: a copy of the reward model (value_init =
    reward_model, when one is given), else the SFT transformer with a fresh linear head."""
    if config.advantage != "gae":
        return None
    if prepared.reward_model is not None and config.value_init == "reward_model":
        critic = copy.deepcopy(prepared.reward_model)
    else:
        backbone = copy.deepcopy(prepared.policy.model.base_model)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            critic = RewardModel(backbone, prepared.policy.model.config.hidden_size)
    return critic.to(prepared.policy.device).eval().requires_grad_(True)


# ---- the training loop -------------------------------------------------------------------------
def optimise(
    rollout: ResponseRollout,
    advantages: torch.Tensor,
    returns: torch.Tensor | None,
    policy,
    critic: RewardModel | None,
    optimizer,
    ptx_stream: np.ndarray | None,
    config: RLHFPPOConfig,
    rng: np.random.Generator,
    *,
    step: int = 0,
) -> dict[str, float]:
    """Step 6: `ppo_epochs` passes of clipped-surrogate (+ value, + ptx) minibatch steps.

    Returns:
        Means over the minibatches: policy_loss, value_loss, clip_fraction, approx_kl, ptx_loss.

    Raises:
        NonFiniteError: a minibatch's loss or gradient norm is not finite (naming iteration
            `step`); no weight has changed in that minibatch.
    """
    mask = rollout.batch.response_mask.bool()
    device = mask.device
    context = context_length(policy)
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    totals: dict[str, list[float]] = {k: [] for k in
                                      ("policy_loss", "value_loss", "clip_fraction", "approx_kl",
                                       "ptx_loss")}  # fmt: skip
    for _ in range(config.ppo_epochs):
        order = torch.from_numpy(rng.permutation(config.rollout_size)).to(device)
        for start in range(0, config.rollout_size, config.minibatch_size):
            rows = order[start : start + config.minibatch_size]
            batch, real = select_rows(rollout.batch, rows), mask[rows]
            log_probs = policy_log_probs(policy, batch, config.temperature)
            log_ratio = (log_probs - rollout.old_log_probs[rows])[real]
            pg_loss, clip_fraction = clipped_surrogate_loss(
                log_ratio, advantages[rows][real], config.clip_range
            )
            loss = pg_loss
            if critic is not None:
                values = token_values(critic, batch)
                old_values = rollout.values[rows][real]
                vf_loss = value_loss(values[real], returns[rows][real], old_values,
                                     config.clip_range_value)  # fmt: skip
                loss = loss + config.vf_coef * vf_loss
                totals["value_loss"].append(vf_loss.item())
            if ptx_stream is not None:  # PPO-ptx: + gamma * (-log pi(x_pretrain))
                inputs, targets = sample_windows(ptx_stream, config.ptx_batch_size, context, rng)
                ptx_loss = next_token_loss(policy, inputs.to(device), targets.to(device))
                loss = loss + config.ptx_coef * ptx_loss
                totals["ptx_loss"].append(ptx_loss.item())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
            runs.check_finite(step, PPO_loss=loss, gradient_norm=grad_norm)
            optimizer.step()
            totals["policy_loss"].append(pg_loss.item())
            totals["clip_fraction"].append(float(clip_fraction))
            totals["approx_kl"].append(float(approximate_kl(log_ratio.detach())))
    return {k: float(np.mean(v)) if v else math.nan for k, v in totals.items()}


@torch.no_grad()
def held_out_evaluation(
    prepared: RLHFPrepared, config: RLHFPPOConfig, responses: list | None = None
) -> dict[str, float]:
    """True reward and KL (nats per response) of responses to the held-out prompts (the same
    draws every time: a generator seeded with the run's seed), and the held-out perplexity;
    `responses`, when given, receives (prompt, response, true score) of each."""
    policy = prepared.policy
    generator = torch.Generator(device=policy.device).manual_seed(config.seed + 1)
    judge = reward_function(config.true_judge or config.judge or "sentiment")
    true, kls = [], []
    chunk = max(config.rollout_size, 1)
    for start in range(0, len(prepared.eval_prompts), chunk):
        prompts = prepared.eval_prompts[start : start + chunk]
        batch, texts, old, ref, _, _ = generate_rollout(
            policy, prepared.reference, None, prompts, config, generator
        )
        kls.append(kl_penalty(old, ref, batch.response_mask).sum(1))
        scores = [judge(p, r) for (p, _), r in zip(prompts, texts, strict=True)]
        true += scores
        if responses is not None:
            responses += [(p, r, s) for (p, _), r, s in zip(prompts, texts, scores, strict=True)]
    loss = held_out_loss(policy.model, prepared.held_stream, policy.context, config.eval_tokens,
                         max(config.ptx_batch_size, 8))  # fmt: skip
    return {
        "eval_reward_true": float(np.mean(true)),
        "eval_kl": float(torch.cat(kls).mean()),
        "held_out_perplexity": perplexity(loss),
    }


def ppo_step(
    prepared: RLHFPrepared,
    critic: RewardModel | None,
    optimizer,
    beta: float,
    config: RLHFPPOConfig,
    rng: np.random.Generator,
    generator: torch.Generator,
    *,
    step: int = 0,
) -> tuple[dict[str, float], float]:
    """One iteration, steps 1-7 of the module docstring (iteration `step`, 1-based, in errors).

    Returns:
        (the metrics of the step, the next beta).

    Raises:
        NonFiniteError: the policy's logits, the reward, a loss or a gradient norm is not finite.
    """
    policy = prepared.policy
    clock = time.perf_counter()
    # 1. rollout: batch_prompts prompts, each group_size times (a group's rows consecutive)
    count = len(prepared.train_prompts)
    chosen = rng.choice(count, config.batch_prompts, replace=config.batch_prompts > count)
    prompts = [prepared.train_prompts[i] for i in chosen for _ in range(config.group_size)]
    try:
        batch, texts, old, ref, values, entropy = generate_rollout(
            policy, prepared.reference, critic, prompts, config, generator
        )
    except NonFiniteError as error:
        raise NonFiniteError(f"{error} at step {step}") from None
    mask = batch.response_mask
    # 2. evaluate: learned reward, rule-based judge, and the true judge for the log
    scores, learned, true = evaluate(
        [p for p, _ in prompts], texts, policy.tokenizer, prepared.reward_model, config,
        policy.device,
    )  # fmt: skip
    runs.check_finite(step, reward=scores.mean())
    # 3. KL penalty (k1 per token), the score at the last real token
    kl = kl_penalty(old, ref, mask)
    rewards = token_rewards(scores, kl, beta, batch.response_lengths, mask)
    # 4. whiten the rewards (optional)
    if config.whiten_rewards:
        rewards = masked_whiten(rewards, mask, shift_mean=False)
    # 5. advantages: GAE over tokens, or a group baseline on the sequence reward
    returns = None
    if config.advantage == "gae":
        advantages, returns = gae_over_tokens(rewards, values, mask, config.gamma, config.lam)
        if config.whiten_advantages:
            advantages = masked_whiten(advantages, mask)
    else:
        sequence = group_advantages(rewards.sum(1), config.group_size, config.advantage)
        advantages = sequence[:, None] * mask
    # 6. optimise
    rollout = ResponseRollout(batch, old, ref, values, entropy, scores, learned, true)
    stats = optimise(rollout, advantages, returns, policy.model, critic, optimizer,
                     prepared.ptx_stream, config, rng, step=step)  # fmt: skip
    # 7. adaptive KL controller
    mean_kl = float(kl.sum(1).mean())
    next_beta = beta
    if config.adaptive_kl:
        next_beta = adaptive_kl_coef(beta, mean_kl, config.target_kl, config.kl_horizon,
                                     config.rollout_size)  # fmt: skip
    metrics = {
        "reward": float(scores.mean()),
        "reward_learned": float(learned.mean()) if learned is not None else math.nan,
        "reward_true": float(true.mean()), "kl": mean_kl, "kl_coef": beta, "entropy": entropy,
        **stats, "response_length": float(batch.response_lengths.float().mean()),
        "tokens_per_second": float(mask.sum()) / (time.perf_counter() - clock),
    }  # fmt: skip
    return metrics, next_beta


COLUMNS = (
    "reward", "reward_learned", "reward_true", "kl", "kl_coef", "entropy", "policy_loss",
    "value_loss", "clip_fraction", "approx_kl", "ptx_loss", "response_length",
    "tokens_per_second", "eval_reward_true", "eval_kl", "held_out_perplexity",
)  # fmt: skip
"""The columns of metrics.csv after step, wall_time and the run's own."""


class HeldOutEvaluation:
    """`held_out_evaluation` as `loop.after_iteration` runs evaluations: every `eval_every`
    iterations and at the last one; its columns are NaN in the other rows."""

    def __init__(self, config: RLHFPPOConfig):
        self.config = config
        #: The measurements of this iteration, or None when it had none.
        self.result: dict[str, float] | None = None

    def due(self, before: int, step: int) -> bool:
        self.result = None
        return crossed(before, step, self.config.eval_every) > 0 or step >= self.config.steps

    def run(self, prepared: RLHFPrepared) -> dict[str, float]:
        self.result = held_out_evaluation(prepared, self.config)
        return self.result

    def columns(self) -> dict[str, float]:
        return self.result or dict.fromkeys(EVAL_COLUMNS, math.nan)

    def solved(self) -> bool:
        return False  # RLHF has no reward threshold: it trains for its steps


#: The columns `held_out_evaluation` fills.
EVAL_COLUMNS = ("eval_reward_true", "eval_kl", "held_out_perplexity")

#: The JSON state a PPO checkpoint adds to `runs.training_state`'s (and "last": None before the
#: first held-out evaluation, else like "initial").
MEASURED = dict.fromkeys(EVAL_COLUMNS, float)
STATE = {"model_config": dict, "pad_id": int, "eos_id": int, "kl_coef": float,
         "initial": MEASURED}  # fmt: skip


def train(config: RLHFPPOConfig, run: Run, prepared: RLHFPrepared | None = None) -> LanguageModel:
    """RLHF with PPO in `run` (module docstring, steps 1-7). Returns the trained policy. A
    resumed run's checkpoint is restored before anything is written; the run is closed when
    training ends."""
    torch.set_num_threads(config.torch_threads)
    with closing(run):
        prepared = prepared or prepare(config)
        policy = prepared.policy
        policy.model.eval()  # dropout off, in the rollout and in the optimisation
        critic = make_critic(prepared, config)
        trained = {"model/": policy.model}  # checkpoint prefix -> module
        if critic is not None:
            trained["critic/"] = critic
        modules = torch.nn.ModuleDict({name.strip("/"): module for name, module in trained.items()})
        optimizer = runs.adamw(modules, config.learning_rate, config.weight_decay)
        rng = seeding.seed_everything(config.seed, own_stream=True)
        generators = {"sample_rng": torch.Generator(device=policy.device).manual_seed(config.seed)}
        step, state = runs.restore(run, trained, optimizer, policy.device, rng, STATE, generators)
        if state.get("last") is not None:
            where = f"run '{run.dir}': its checkpoint"
            checkpoint.check_schema(state, {"last": MEASURED}, where, "state.")
        runs.copy_tokenizer(policy, run)
        state = {"kl_coef": config.kl_coef, **state}
        _loop(config, run, prepared, critic, optimizer, rng, generators, trained, step, state)
    return policy


def _loop(config, run, prepared, critic, optimizer, rng, generators, trained, step, state):
    """The iterations in the open run, from `step`; `state` holds kl_coef, initial and last."""
    tokenizer, device = prepared.policy.tokenizer, prepared.policy.device
    evaluation = HeldOutEvaluation(config)

    def save():
        arrays, rngs = runs.training_state(trained, optimizer, device, rng, step, generators)
        return arrays, {
            "model_config": config_dict(prepared.policy.model), "pad_id": tokenizer.pad_id,
            "eos_id": tokenizer.eos_id, "kl_coef": state["kl_coef"], "initial": state["initial"],
            "last": state.get("last"), **rngs,
        }  # fmt: skip

    def log(columns: dict[str, float]) -> None:
        if evaluation.result is not None:
            state["last"] = evaluation.result
        run.log(step, **metrics, **columns)

    with run.session(step):
        if run.restored is None:
            state["initial"] = held_out_evaluation(prepared, config)
            run.log(0, **{**dict.fromkeys(COLUMNS, math.nan), "kl_coef": state["kl_coef"],
                          **state["initial"]})  # fmt: skip
        while step < config.steps:
            metrics, state["kl_coef"] = ppo_step(
                prepared, critic, optimizer, state["kl_coef"], config, rng,
                generators["sample_rng"], step=step + 1,
            )  # fmt: skip
            step += 1
            if after_iteration(run, step, step - 1, save=save, log=log,
                               evaluation=evaluation, policy=lambda: prepared):  # fmt: skip
                break
    if not run.stop_requested and state.get("last"):
        first, last = state["initial"], state["last"]
        run.notes.append(
            f"held-out true reward: {first['eval_reward_true']:.3f} -> "
            f"{last['eval_reward_true']:.3f}; KL to the SFT model: {last['eval_kl']:.3f} nats; "
            f"held-out perplexity: {first['held_out_perplexity']:.2f} -> "
            f"{last['held_out_perplexity']:.2f}"
        )

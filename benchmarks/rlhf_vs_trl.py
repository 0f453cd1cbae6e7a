"""RLHF training speed: bellman against TRL on the same tiny GPT-2 and the same data, one process.

Both libraries train the same model, built from a config (never downloaded): a GPT-2 with 2
layers, width 128, 4 heads, a context of 128 and a 4,096-entry byte-level BPE vocabulary trained
with `tokenizers` on CPython's `pydoc_data.topics` (always installed). Every model of a row starts
from the same seeded weights. Rows (seconds per step and tokens per second, medians over the
measured steps, the first step of each side a warm-up left out):

    reward model   bellman: `reward_model` (score_comparisons + preference_loss + AdamW)
                   TRL: RewardTrainer on GPT2ForSequenceClassification (same backbone weights)
    DPO            bellman: `dpo` (sequence_log_probs of policy and reference + dpo_loss)
                   TRL: DPOTrainer with the same policy and a reference model
    online RL      one rollout of 16 prompts x 4 responses x 32 new tokens, scored by a reward
                   model, and its optimisation (one epoch, 4 minibatches of 16 responses);
                   bellman: `rlhf_ppo.ppo_step` with advantage = grpo, rloo and gae (PPO with a
                   value model); TRL: GRPOTrainer and RLOOTrainer (TRL 1.x has no PPOTrainer)

The data: prompts of exactly 16 tokens and responses of exactly 31 tokens + EOS, cut from the
corpus at word boundaries, so the separate tokenization of bellman (`tokenize_pair`) and the
joint one of TRL give the same ids, and every batch has the same shape in both libraries
(bellman's left-padded prompt | right-padded response layout needs no padding either). The
preference rows take 16 comparisons (32 sequences of 48 tokens) per step in both.

Equal settings: fp32, dropout off, no gradient checkpointing (TRL's configs default to bf16 and
gradient checkpointing: both are switched off here and listed in the JSON), gradient-norm clip
1, AdamW (beta2 0.95), the same learning rate, a KL coefficient 0.04 with a frozen reference
model on both sides in RL, sampling at temperature 1 with no top-k/top-p, one pass over each
rollout. The learned reward in RL is the same reward model on both sides (bellman's RewardModel
and TRL's GPT2ForSequenceClassification, same weights). What stays different by design: TRL
decodes completions and re-tokenizes prompt + completion for its reward model; bellman also
scores every response with its `true_judge` (VADER) for its logs, as `ppo_step` always does.

How the clocks run: TRL's trainer drives the loop, and a TrainerCallback runs bellman's step(s)
right after every TRL step (every 4 TRL steps in RL: one TRL rollout feeds 4 optimizer steps),
so both libraries see the same machine load, interleaved. A TRL step is the time from the end
of the previous callback to the end of its step (data loading, generation, scoring,
optimisation, its bookkeeping); a bellman step is the time of its library call(s).

    python benchmarks/rlhf_vs_trl.py                 # 1 and 2 torch threads, ~5-10 minutes
    python benchmarks/rlhf_vs_trl.py --threads 1     # one setting
    python benchmarks/rlhf_vs_trl.py --quick         # a smoke run: 2 steps, 1 rollout

Run it from the repository root; needs `pip install -e .[bench]` (trl). Everything runs offline
(HF_HUB_OFFLINE=1, models from configs, local tokenizer objects). Writes
benchmarks/results/rlhf_vs_trl.json (BELLMAN_BENCH_RESULTS=DIR writes elsewhere).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from common import header, print_table, processor, ratio, today, write_results

#: Environment that keeps transformers, datasets and TRL offline and quiet (set before import).
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRL_EXPERIMENTAL_SILENCE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TQDM_DISABLE": "1",
    "WANDB_DISABLED": "true",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}


@dataclass(frozen=True)
class Settings:
    """What both libraries run with (recorded in the JSON)."""

    vocab_size: int = 4096
    layers: int = 2
    width: int = 128
    heads: int = 4
    context: int = 128
    prompt_tokens: int = 16
    response_tokens: int = 32  # EOS included
    pref_batch: int = 16  # comparisons (chosen, rejected) per step
    rl_prompts: int = 16
    group_size: int = 4
    new_tokens: int = 32
    minibatch: int = 16  # responses per optimizer step in RL
    learning_rate: float = 1e-5
    dpo_beta: float = 0.1
    kl_coef: float = 0.04
    pref_steps: int = 10  # measured steps (after one warm-up step)
    rollouts: int = 4  # measured RL rollouts (after one warm-up rollout)
    seed: int = 0

    @property
    def rollout_size(self) -> int:
        return self.rl_prompts * self.group_size

    @property
    def steps_per_rollout(self) -> int:
        return self.rollout_size // self.minibatch


# ---- data and models -------------------------------------------------------------------------
@dataclass
class Data:
    tokenizer: object  # bellman's TextTokenizer
    hf_tokenizer: object  # the same tokenizer as a transformers PreTrainedTokenizerFast
    texts: list[tuple[str, str, str]]  # (prompt, chosen, rejected), responses start with " "
    comparisons: list  # bellman TokenizedComparison, same ids
    rl_prompts: list[tuple[str, list[int]]]


def _spans(tokenizer, words: list[str], start: int, tokens: int, lead: str) -> tuple[str, int]:
    """The text of words[start:end] (after `lead`) that is exactly `tokens` tokens, and `end`;
    ("", start) when no word boundary gives exactly that many."""
    for end in range(start + 1, min(len(words), start + 4 * tokens) + 1):
        text = lead + " ".join(words[start:end])
        count = len(tokenizer.encode(text))
        if count == tokens:
            return text, end
        if count > tokens:
            break
    return "", start


def build_data(settings: Settings, comparisons: int) -> Data:
    """Train the tokenizer on pydoc, cut prompts and responses of exact token lengths."""
    from transformers import PreTrainedTokenizerFast

    from bellman.lm.data import load_corpus
    from bellman.lm.reward_model import TokenizedComparison
    from bellman.lm.tokenizer import EOS, PAD, tokenize_pair, train_tokenizer

    documents = load_corpus("pydoc").documents
    tokenizer = train_tokenizer(documents, settings.vocab_size)
    hf_tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer.tokenizer, pad_token=PAD, eos_token=EOS
    )
    words = " ".join(documents).split()
    response = settings.response_tokens - 1
    pieces: list[tuple[str, str]] = []  # (prompt, continuation)
    position = 0
    while len(pieces) < 2 * comparisons + 1 and position < len(words) - 200:
        prompt, middle = _spans(tokenizer, words, position, settings.prompt_tokens, "")
        answer, end = _spans(tokenizer, words, middle, response, " ") if prompt else ("", middle)
        if prompt and answer:
            pieces.append((prompt, answer))
        position = max(end, position + 1) + 7
    texts = [(pieces[i][0], pieces[i][1], pieces[i + 1][1]) for i in range(0, 2 * comparisons, 2)]
    tokenized = []
    for prompt, chosen, rejected in texts:
        pairs = [tokenize_pair(tokenizer, prompt, r) for r in (chosen, rejected)]
        joint = [hf_tokenizer(prompt + r + EOS)["input_ids"] for r in (chosen, rejected)]
        if [p + r for p, r in pairs] != joint:
            raise SystemExit("separate and joint tokenization differ; the data is not equal")
        tokenized.append(TokenizedComparison(pairs[0][0], [r for _, r in pairs], None))
    rl_prompts = [(prompt, tokenizer.encode(prompt)) for prompt, _, _ in texts]
    return Data(tokenizer, hf_tokenizer, texts, tokenized, rl_prompts)


def fresh_lm(settings: Settings, tokenizer):
    """The GPT-2 every row starts from (the same seeded weights every call), dropout off."""
    from bellman.lm.model import build_gpt

    return build_gpt(
        tokenizer.vocab_size, settings.layers, settings.width, settings.heads, settings.context,
        0.0, tokenizer.pad_id, tokenizer.eos_id, settings.seed,
    )  # fmt: skip


def fresh_reward_models(settings: Settings, tokenizer):
    """(bellman RewardModel, TRL's GPT2ForSequenceClassification) with the same weights."""
    from transformers import GPT2ForSequenceClassification

    from bellman.lm.model import RewardModel

    lm = fresh_lm(settings, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        ours = RewardModel.from_lm(lm)
    config = copy.deepcopy(lm.config)
    config.num_labels = 1
    theirs = GPT2ForSequenceClassification(config)
    theirs.transformer.load_state_dict(lm.transformer.state_dict())
    with torch.no_grad():
        theirs.score.weight.copy_(ours.head.weight)
    return ours, theirs


def save_local(model, directory: Path) -> None:
    """Write the model to a local folder and name it there (TRL builds its GRPO/RLOO reference
    model with from_pretrained(config._name_or_path): a local path, never the hub)."""
    model.save_pretrained(str(directory))
    model.config._name_or_path = str(directory)


# ---- bellman's steps ---------------------------------------------------------------------------
def preference_step(settings: Settings, data: Data, model, loss_of, name: str):
    """One step of a preference loop (reward model or DPO, steps 3-6) as a closure: cosine step
    size, a minibatch of comparisons, `loss_of(chunk, winners, losers, prompts)`, a clipped AdamW
    step; the closure returns the step's tokens."""
    from bellman.lm import runs
    from bellman.lm.reward_model import comparison_pairs

    optimizer = runs.adamw(model, settings.learning_rate, 0.0)
    rng = np.random.default_rng(settings.seed)
    state = {"step": 0}
    total = settings.pref_steps + 1

    def step() -> int:
        learning_rate = runs.cosine_learning_rate(state["step"], settings.learning_rate, 0,
                                                  total, 0.1)  # fmt: skip
        for group in optimizer.param_groups:
            group["lr"] = learning_rate
        chosen = rng.choice(len(data.comparisons), settings.pref_batch, replace=False)
        chunk = [data.comparisons[i] for i in chosen]
        loss = loss_of(chunk, *comparison_pairs(chunk))
        if not torch.isfinite(loss):
            raise SystemExit(f"bellman {name}: loss {float(loss)}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        state["step"] += 1
        return sum(len(c.prompt) * len(c.responses) + sum(map(len, c.responses)) for c in chunk)

    return step


def bellman_reward_step(settings: Settings, data: Data):
    """One step of `reward_model.train`'s loop (steps 3-6) as a closure; returns its tokens."""
    from bellman.lm.reward_model import preference_loss, score_comparisons

    reward_model, _ = fresh_reward_models(settings, data.tokenizer)
    reward_model.train()
    pad = data.tokenizer.pad_id

    def loss_of(chunk, winners, losers, prompts):
        scores = score_comparisons(reward_model, chunk, pad)
        return preference_loss(scores, winners, losers, prompts)

    return preference_step(settings, data, reward_model, loss_of, "reward model")


def bellman_dpo_step(settings: Settings, data: Data):
    """One step of `dpo.train`'s loop (steps 3-6) as a closure; returns its tokens."""
    from bellman.lm.dpo import dpo_loss, sequence_log_probs

    policy = fresh_lm(settings, data.tokenizer).eval()
    reference = fresh_lm(settings, data.tokenizer).eval().requires_grad_(False)
    pad = data.tokenizer.pad_id

    def loss_of(chunk, winners, losers, prompts):
        policy_lp = sequence_log_probs(policy, chunk, pad)
        with torch.no_grad():
            ref_lp = sequence_log_probs(reference, chunk, pad)
        return dpo_loss(policy_lp, ref_lp, winners, losers, prompts, settings.dpo_beta)

    return preference_step(settings, data, policy, loss_of, "DPO")


def bellman_rl_config(settings: Settings, advantage: str):
    """The PPOConfig of bellman's RL rows (the reward model is handed over in memory)."""
    from bellman.lm.rlhf_ppo import RLHFPPOConfig as PPOConfig

    config = PPOConfig(
        base="(in memory)", reward_model="(in memory)", seed=settings.seed,
        batch_prompts=settings.rl_prompts, group_size=settings.group_size,
        max_new_tokens=settings.new_tokens, temperature=1.0, advantage=advantage,
        ppo_epochs=1, minibatch_size=settings.minibatch, learning_rate=settings.learning_rate,
        grad_clip=1.0, kl_coef=settings.kl_coef, adaptive_kl=False, device="cpu",
        torch_threads=torch.get_num_threads(),
    )  # fmt: skip
    config.validate()
    return config


def bellman_rl_step(settings: Settings, data: Data, advantage: str):
    """`rlhf_ppo.ppo_step` (rollout, reward model, KL, advantages, optimisation) as a closure;
    returns the number of generated tokens."""
    from bellman.lm import runs
    from bellman.lm.model import LanguageModel
    from bellman.lm.rlhf_ppo import RLHFPrepared as Prepared
    from bellman.lm.rlhf_ppo import make_critic, ppo_step

    config = bellman_rl_config(settings, advantage)
    policy = LanguageModel(fresh_lm(settings, data.tokenizer).eval(), data.tokenizer)
    reference = fresh_lm(settings, data.tokenizer).eval().requires_grad_(False)
    reward_model, _ = fresh_reward_models(settings, data.tokenizer)
    reward_model.eval().requires_grad_(False)
    prepared = Prepared(policy, reference, reward_model, list(data.rl_prompts), [], None,
                        np.zeros(0, dtype=np.int64))  # fmt: skip
    critic = make_critic(prepared, config)
    trained = torch.nn.ModuleDict({"policy": policy.model})
    if critic is not None:
        trained["critic"] = critic
    optimizer = runs.adamw(trained, config.learning_rate, 0.0)
    rng = np.random.default_rng(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    state = {"beta": config.kl_coef}

    def step() -> int:
        metrics, state["beta"] = ppo_step(prepared, critic, optimizer, state["beta"], config,
                                          rng, generator)  # fmt: skip
        return round(metrics["response_length"] * config.rollout_size)

    return step


# ---- TRL's trainers ----------------------------------------------------------------------------
def common_trl_args(settings: Settings, output_dir: Path, max_steps: int) -> dict:
    """TrainingArguments every TRL config here gets: CPU, fp32, no checkpointing, no logging
    or saving inside the timed loop, the same optimizer settings as bellman."""
    return {
        "output_dir": str(output_dir),
        "max_steps": max_steps,
        "learning_rate": settings.learning_rate,
        "adam_beta2": 0.95,
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "gradient_accumulation_steps": 1,
        "bf16": False,
        "fp16": False,
        "gradient_checkpointing": False,
        "use_cpu": True,
        "logging_strategy": "no",
        "save_strategy": "no",
        "eval_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "seed": settings.seed,
    }


def trl_reward_trainer(settings: Settings, data: Data, output_dir: Path):
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    _, model = fresh_reward_models(settings, data.tokenizer)
    config = RewardConfig(
        **common_trl_args(settings, output_dir, settings.pref_steps + 1),
        per_device_train_batch_size=settings.pref_batch, max_length=settings.context,
        disable_dropout=True, pad_to_multiple_of=None,
    )  # fmt: skip
    dataset = Dataset.from_dict({
        "chosen_ids": [c.prompt + c.responses[0] for c in data.comparisons],
        "rejected_ids": [c.prompt + c.responses[1] for c in data.comparisons],
    })  # fmt: skip
    trainer = RewardTrainer(model=model, args=config, train_dataset=dataset,
                            processing_class=data.hf_tokenizer)  # fmt: skip
    return trainer, config


def trl_dpo_trainer(settings: Settings, data: Data, output_dir: Path):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    config = DPOConfig(
        **common_trl_args(settings, output_dir, settings.pref_steps + 1),
        per_device_train_batch_size=settings.pref_batch, max_length=settings.context,
        beta=settings.dpo_beta, loss_type=["sigmoid"], disable_dropout=True,
        precompute_ref_log_probs=False, pad_to_multiple_of=None,
    )  # fmt: skip
    dataset = Dataset.from_dict({
        "prompt": [p for p, _, _ in data.texts], "chosen": [c for _, c, _ in data.texts],
        "rejected": [r for _, _, r in data.texts],
    })  # fmt: skip
    trainer = DPOTrainer(
        model=fresh_lm(settings, data.tokenizer), ref_model=fresh_lm(settings, data.tokenizer),
        args=config, train_dataset=dataset, processing_class=data.hf_tokenizer,
    )  # fmt: skip
    return trainer, config


def trl_online_trainer(settings: Settings, data: Data, output_dir: Path, kind: str):
    """GRPOTrainer or RLOOTrainer: 16 prompts x 4 completions per generation, 4 optimizer steps
    of 16 completions each, one iteration, KL coefficient as bellman's, the same reward model."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    config_class, trainer_class = {
        "grpo": (GRPOConfig, GRPOTrainer), "rloo": (RLOOConfig, RLOOTrainer)
    }[kind]  # fmt: skip
    config = config_class(
        **common_trl_args(settings, output_dir, settings.steps_per_rollout *
                          (settings.rollouts + 1)),
        per_device_train_batch_size=settings.minibatch,
        steps_per_generation=settings.steps_per_rollout, num_generations=settings.group_size,
        max_completion_length=settings.new_tokens, temperature=1.0, top_p=1.0, top_k=0,
        beta=settings.kl_coef, num_iterations=1, epsilon=0.2, disable_dropout=True,
        pad_to_multiple_of=None, shuffle_dataset=True,
    )  # fmt: skip
    policy = fresh_lm(settings, data.tokenizer)
    save_local(policy, output_dir / "initial-policy")
    _, reward_model = fresh_reward_models(settings, data.tokenizer)
    reward_model.eval().requires_grad_(False)
    dataset = Dataset.from_dict({"prompt": [text for text, _ in data.rl_prompts]})
    trainer = trainer_class(
        model=policy, reward_funcs=reward_model, args=config, train_dataset=dataset,
        processing_class=data.hf_tokenizer, reward_processing_classes=data.hf_tokenizer,
    )  # fmt: skip
    return trainer, config


# ---- interleaved clocks ----------------------------------------------------------------------
def make_interleave_callback(every: int, steppers: dict, trl_tokens):
    """A TrainerCallback that, after every `every`-th TRL step, clocks that TRL step (group) and
    then runs and clocks one step of each bellman stepper."""
    from transformers import TrainerCallback

    class Interleave(TrainerCallback):
        def __init__(self):
            self.resumed = time.perf_counter()
            self.trl: list[tuple[float, int]] = []
            self.ours: dict[str, list[tuple[float, int]]] = {name: [] for name in steppers}

        def on_train_begin(self, args, state, control, **kwargs):
            self.resumed = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % every:
                return
            self.trl.append((time.perf_counter() - self.resumed, trl_tokens()))
            for name, step in steppers.items():
                started = time.perf_counter()
                tokens = step()
                self.ours[name].append((time.perf_counter() - started, tokens))
            self.resumed = time.perf_counter()

    return Interleave()


def summarise(clocks: list[tuple[float, int]]) -> dict:
    """Median seconds per step and tokens per second over the steps after the warm-up."""
    measured = clocks[1:]
    seconds = [s for s, _ in measured]
    tokens = [t for _, t in measured]
    if not seconds:
        return {"steps": 0, "seconds_per_step": math.nan, "tokens_per_second": math.nan}
    return {
        "steps": len(seconds),
        "seconds_per_step": statistics.median(seconds),
        "tokens_per_step": statistics.mean(tokens),
        "tokens_per_second": sum(tokens) / sum(seconds),
        "seconds": seconds,
        "warmup_seconds": clocks[0][0],
    }


def run_task(task: str, settings: Settings, data: Data) -> tuple[dict, dict]:
    """One TRL trainer with its bellman counterparts interleaved; (results, TRL config dict)."""
    from transformers import PrinterCallback

    def pref_tokens() -> int:  # every sequence is prompt_tokens + response_tokens long
        return settings.pref_batch * 2 * (settings.prompt_tokens + settings.response_tokens)

    tokens = pref_tokens
    every = 1
    with tempfile.TemporaryDirectory(prefix="rlhf-vs-trl-") as tmp:
        if task == "reward":
            trainer, config = trl_reward_trainer(settings, data, Path(tmp))
            steppers = {"bellman reward_model": bellman_reward_step(settings, data)}
        elif task == "dpo":
            trainer, config = trl_dpo_trainer(settings, data, Path(tmp))
            steppers = {"bellman dpo": bellman_dpo_step(settings, data)}
        else:
            trainer, config = trl_online_trainer(settings, data, Path(tmp), task)
            steppers = {f"bellman {task}": bellman_rl_step(settings, data, task)}
            if task == "grpo":
                steppers["bellman ppo"] = bellman_rl_step(settings, data, "gae")
            every = settings.steps_per_rollout
            metrics = trainer._metrics["train"]

            def tokens() -> int:  # what TRL generated in this rollout
                return round(metrics["completions/mean_length"][-1] * settings.rollout_size)

        callback = make_interleave_callback(every, steppers, tokens)
        trainer.remove_callback(PrinterCallback)  # no log lines printed inside the clocks
        trainer.add_callback(callback)
        trainer.train()
    results = {f"TRL {type(trainer).__name__}": summarise(callback.trl)}
    results.update({name: summarise(clocks) for name, clocks in callback.ours.items()})
    return results, config.to_dict()


#: (row label, bellman entry, TRL entry, target bellman/TRL time ratio), in table order.
ROWS = (
    ("reward model", "bellman reward_model", "TRL RewardTrainer", 1.0),
    ("DPO", "bellman dpo", "TRL DPOTrainer", 1.0),
    ("RL GRPO", "bellman grpo", "TRL GRPOTrainer", 0.5),
    ("RL RLOO", "bellman rloo", "TRL RLOOTrainer", 1.0),
    ("RL PPO (value model)", "bellman ppo", None, 1.0),
)
TASKS = ("reward", "dpo", "grpo", "rloo")


def _cell(value: float, spec: str) -> str:
    return spec.format(value) if math.isfinite(value) else "n/a"


def print_results(by_threads: dict[int, dict], settings: Settings, trl_version: str) -> None:
    print()
    print(
        f"RLHF steps, bellman vs TRL {trl_version}: GPT-2 {settings.layers} layers x "
        f"{settings.width} wide, {settings.heads} heads, {settings.vocab_size} BPE vocabulary; "
        f"preference steps of {settings.pref_batch} pairs x "
        f"{settings.prompt_tokens}+{settings.response_tokens} tokens; RL rollouts of "
        f"{settings.rl_prompts} prompts x {settings.group_size} responses x "
        f"{settings.new_tokens} new tokens, {settings.steps_per_rollout} optimizer steps each; "
        f"CPU fp32, torch {torch.__version__}, {processor()}, {today()}"
    )
    rows = []
    for threads, results in by_threads.items():
        for label, ours_name, theirs_name, target in ROWS:
            ours = results.get(ours_name)
            if ours is None:
                continue
            theirs = results.get(theirs_name) if theirs_name else None
            if theirs is None:
                theirs_cells = ["n/a: TRL has no PPOTrainer", "n/a", "n/a", "n/a"]
            else:
                time_ratio = ratio(ours["seconds_per_step"], theirs["seconds_per_step"])
                verdict = "met" if time_ratio <= target else "MISSED"
                theirs_cells = [
                    _cell(theirs["seconds_per_step"], "{:.3f}"),
                    _cell(theirs["tokens_per_second"], "{:,.0f}"),
                    _cell(time_ratio, "x{:.2f}"),
                    f"<= {target:g}: {verdict}",
                ]
            rows.append([
                threads, label, _cell(ours["seconds_per_step"], "{:.3f}"),
                _cell(ours["tokens_per_second"], "{:,.0f}"), *theirs_cells,
            ])  # fmt: skip
    print_table(
        ["threads", "row", "bellman s/step", "bellman tokens/s", "TRL s/step", "TRL tokens/s",
         "bellman / TRL time", "target"],
        rows,
    )  # fmt: skip
    print(
        "tokens/s: preference rows count prompt + response tokens of every sequence, RL rows the "
        "generated tokens; s/step: median over the measured steps (warm-up step excluded)."
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1, 2],
        help="torch.set_num_threads values to run, in order (default: 1 2)",
    )
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument(
        "--steps", type=int, default=None, help="measured preference steps (default 10; --quick 2)"
    )
    parser.add_argument(
        "--rollouts", type=int, default=None, help="measured RL rollouts (default 4; --quick 1)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 steps, 1 rollout")
    args = parser.parse_args()
    if any(t < 1 for t in args.threads):
        parser.error("--threads must be at least 1")
    return args


def main() -> None:
    for key, value in OFFLINE.items():
        os.environ.setdefault(key, value)
    args = parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers 5 renames
    import trl  # after the environment above: offline from the first import
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()

    settings = Settings()
    steps = args.steps if args.steps is not None else (2 if args.quick else settings.pref_steps)
    rollouts = args.rollouts if args.rollouts is not None else (1 if args.quick else
                                                                settings.rollouts)  # fmt: skip
    settings = Settings(pref_steps=max(1, steps), rollouts=max(1, rollouts))
    started = time.perf_counter()
    data = build_data(settings, comparisons=max(64, settings.pref_batch * 4))
    by_threads: dict[int, dict] = {}
    trl_configs: dict[str, dict] = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        results: dict[str, dict] = {}
        for task in args.tasks:
            found, trl_config = run_task(task, settings, data)
            results.update(found)
            trl_configs[task] = trl_config
            for name, row in found.items():
                print(
                    f"[{time.perf_counter() - started:5.0f} s] threads {threads} {name:22s} "
                    f"{row['seconds_per_step']:.3f} s/step, {row['tokens_per_second']:,.0f} "
                    f"tokens/s ({row['steps']} steps)", flush=True,
                )  # fmt: skip
        by_threads[threads] = results
    print_results(by_threads, settings, trl.__version__)
    ratios = {
        threads: {
            label: ratio(results[ours]["seconds_per_step"], results[theirs]["seconds_per_step"])
            for label, ours, theirs, _ in ROWS
            if theirs and ours in results and theirs in results
        }
        for threads, results in by_threads.items()
    }
    record = {
        **header(
            None, "torch", "transformers", "tokenizers", "trl", "accelerate", "datasets", "bellman"
        ),  # fmt: skip
        "args": vars(args),
        "settings": {
            **asdict(settings),
            "rollout_size": settings.rollout_size,
            "steps_per_rollout": settings.steps_per_rollout,
        },  # fmt: skip
        "targets": {label: target for label, _, theirs, target in ROWS if theirs},
        "trl_overrides_of_defaults": {
            "bf16": "False (TRL default True: fp32 like bellman)",
            "gradient_checkpointing": "False (TRL default True: bellman does not recompute)",
            "beta (GRPO)": f"{settings.kl_coef} (TRL default 0.0: no reference model)",
            "disable_dropout": "True (GRPO/RLOO default False; the GPT is built with dropout 0)",
        },
        "trl_configs": trl_configs,
        "bellman_rl_configs": {
            kind: asdict(bellman_rl_config(settings, kind)) for kind in ("grpo", "rloo", "gae")
        },
        "results": {str(threads): results for threads, results in by_threads.items()},
        "ratios_bellman_over_trl_seconds": {str(t): r for t, r in ratios.items()},
        "total_seconds": time.perf_counter() - started,
    }
    write_results("rlhf_vs_trl", record, default=str)


if __name__ == "__main__":
    main()

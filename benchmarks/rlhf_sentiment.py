"""Controlled sentiment, the TRL GPT-2/IMDB example rebuilt offline: the whole ChatGPT recipe on
Debian's fortunes, with VADER as the known true reward.

    1. `bellman lm pretrain --corpus fortunes`: a byte-level BPE tokenizer and a 4-layer GPT
       (width 128, context 96, 2,048 tokens) trained from scratch.
    2. `bellman lm demos` + `bellman lm sft`: demonstrations = openings of held-out quotes and
       continuations of quotes the judge rates well.
    3. `bellman lm label` (K = 8 sampled responses per prompt ranked by VADER, the simulated
       labeler) + `bellman lm reward`: the reward model; its held-out pairwise accuracy.
    4. `bellman lm ppo --reward-model`: PPO against the learned reward with a KL penalty to the
       SFT model; the same with PPO-ptx (`ptx_coef`, pretraining batches mixed in).
    5. `bellman lm dpo` on the same ranked comparisons.

Every model is then measured the same way (`rlhf_ppo.held_out_evaluation`, the evaluation `lm
ppo` logs): responses to the held-out prompts (the same seeded draws for every model), their
true VADER score, the KL to the SFT model (nats per response, sum over tokens of log pi - log
pi_SFT) and the held-out perplexity of the corpus. The issue asks: PPO raises the true score by
a large margin; PPO-ptx keeps perplexity within 10% of the SFT model's while plain PPO may drift;
DPO also raises the true score.

    python benchmarks/rlhf_sentiment.py [--out DIR] [--quick]

One torch thread, seed 0; about 25 minutes on a quiet 2-core machine (`--quick`: a smoke run of
a few minutes with tiny sizes). Needs Debian's fortunes package (`apt-get install fortunes`);
without it, `--corpus pydoc`. Writes benchmarks/results/rlhf_sentiment.json.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import header, print_table, write_results

#: The sizes of each step (`--set` overrides); QUICK replaces some for a smoke run.
FULL = {
    "pretrain": dict(
        vocab_size=2048, context=96, layers=4, width=128, heads=4, dropout=0, batch_size=32,
        steps=1200, learning_rate=3e-3, warmup_steps=100, log_every=100, eval_tokens=16384,
    ),
    "sft": dict(steps=300, batch_size=32, learning_rate=5e-4, warmup_steps=20, log_every=50),
    "reward": dict(steps=300, batch_prompts=16, learning_rate=5e-4, warmup_steps=20,
                   log_every=50),
    "ppo": dict(
        steps=100, batch_prompts=16, max_new_tokens=16, minibatch_size=16, learning_rate=2e-4,
        kl_coef=0.2, adaptive_kl="false", eval_every=25, eval_fraction=0.1, eval_tokens=8192,
    ),
    "dpo": dict(steps=300, batch_prompts=8, learning_rate=5e-4, warmup_steps=20, log_every=50),
}  # fmt: skip
FULL_LABEL = ("--prompts", "2000", "--k", "8", "--max-new-tokens", "16")
QUICK = {
    "pretrain": dict(layers=2, width=64, vocab_size=1024, context=64, steps=150),
    "sft": dict(steps=40), "reward": dict(steps=40), "ppo": dict(steps=6, eval_every=3),
    "dpo": dict(steps=40),
}  # fmt: skip
QUICK_LABEL = ("--prompts", "300", "--k", "4", "--max-new-tokens", "16")
PTX_COEF = 1.0


def sets(values: dict) -> list[str]:
    return [item for key, value in values.items() for item in ("--set", f"{key}={value}")]


def bellman(*args: str) -> str:
    """`bellman ARGS` in a subprocess; its output echoed; stops the benchmark on failure."""
    print(f"$ bellman {' '.join(args)}", flush=True)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "bellman", *args], stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    print(result.stdout, end="")
    print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)
    if result.returncode != 0:
        sys.exit(f"`bellman {' '.join(args)}` exited {result.returncode}")
    return result.stdout


def last_value(run_dir: Path, column: str) -> float:
    with open(run_dir / "metrics.csv", encoding="utf-8", newline="") as handle:
        values = [row[column] for row in csv.DictReader(handle) if row.get(column)]
    return float(values[-1])


def measure(model_dir: Path, sft_dir: Path, corpus: str, ppo: dict) -> dict[str, float]:
    """True score, KL to the SFT model and held-out perplexity of one model, measured exactly as
    `lm ppo` measures its policy (the SFT model is the reference)."""
    from bellman.lm import rlhf_ppo, runs

    config = rlhf_ppo.RLHFPPOConfig(
        env=corpus, base=str(sft_dir), judge="sentiment", seed=0,
        **{k: ppo[k] for k in ("batch_prompts", "max_new_tokens", "minibatch_size",
                               "eval_fraction", "eval_tokens")},
    )  # fmt: skip
    prepared = rlhf_ppo.prepare(config)
    prepared.policy = runs.load_lm(model_dir, "cpu")
    prepared.policy.model.eval()
    result = rlhf_ppo.held_out_evaluation(prepared, config)
    result["prompts"] = len(prepared.eval_prompts)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="fortunes")
    parser.add_argument("--out", type=Path, help="folder for the runs (default: a temp folder)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sizes = {step: dict(values) for step, values in FULL.items()}
    label = FULL_LABEL
    if args.quick:
        for step, values in QUICK.items():
            sizes[step].update(values)
        label = QUICK_LABEL
    root = args.out or Path(tempfile.mkdtemp(prefix="rlhf-sentiment-"))
    root.mkdir(parents=True, exist_ok=True)
    run = {name: root / name for name in ("pretrain", "sft", "reward", "ppo", "ppo-ptx", "dpo")}
    started = time.perf_counter()
    seconds = {}

    def timed(name, *command):
        clock = time.perf_counter()
        output = bellman(*command)
        seconds[name] = time.perf_counter() - clock
        return output

    timed("pretrain", "lm", "pretrain", "--corpus", args.corpus, *sets(sizes["pretrain"]),
          "--run-dir", str(run["pretrain"]), "--quiet")  # fmt: skip
    timed("demos", "lm", "demos", str(run["pretrain"]), "--response-words", "12")
    timed("sft", "lm", "sft", str(run["pretrain"]), "--data", str(run["pretrain"] / "demos.jsonl"),
          *sets(sizes["sft"]), "--run-dir", str(run["sft"]), "--quiet")  # fmt: skip
    timed("label", "lm", "label", str(run["sft"]), "--judge", "sentiment", *label)
    ranked = str(run["sft"] / "ranked.jsonl")
    timed("reward", "lm", "reward", str(run["sft"]), "--data", ranked, *sets(sizes["reward"]),
          "--run-dir", str(run["reward"]), "--quiet")  # fmt: skip
    for name, extra in (("ppo", {}), ("ppo-ptx", {"ptx_coef": PTX_COEF})):
        timed(name, "lm", "ppo", str(run["sft"]), "--reward-model", str(run["reward"]),
              *sets({**sizes["ppo"], **extra}), "--run-dir", str(run[name]), "--quiet")  # fmt: skip
    timed("dpo", "lm", "dpo", str(run["sft"]), "--data", ranked, *sets(sizes["dpo"]),
          "--run-dir", str(run["dpo"]), "--quiet")  # fmt: skip

    results = {name: measure(run[name], run["sft"], args.corpus, sizes["ppo"])
               for name in ("sft", "ppo", "ppo-ptx", "dpo")}  # fmt: skip
    sft = results["sft"]
    for result in results.values():
        result["perplexity_vs_sft"] = result["held_out_perplexity"] / sft["held_out_perplexity"] - 1
    for name in ("ppo", "ppo-ptx"):
        results[name]["reward_learned_last"] = last_value(run[name], "reward_learned")
        results[name]["reward_true_last"] = last_value(run[name], "reward_true")
    accuracy = last_value(run["reward"], "held_out_accuracy")
    pretrain_perplexity = last_value(run["pretrain"], "held_out_perplexity")

    print(f"\nControlled sentiment on {args.corpus}, seed 0, 1 torch thread "
          f"({time.perf_counter() - started:.0f} s in all)")  # fmt: skip
    print(f"pretraining: held-out perplexity {pretrain_perplexity:.1f}; reward model: held-out "
          f"pairwise accuracy {accuracy:.3f} (chance 0.5)")  # fmt: skip
    labels = {"sft": "SFT (start)", "ppo": "PPO, learned reward",
              "ppo-ptx": f"PPO-ptx (ptx_coef {PTX_COEF:g})", "dpo": "DPO"}  # fmt: skip
    print_table(
        ["model", "true score (VADER)", "KL to SFT (nats/response)", "held-out perplexity",
         "vs SFT"],
        [[labels[name], f"{r['eval_reward_true']:+.3f}", f"{r['eval_kl']:.2f}",
          f"{r['held_out_perplexity']:.1f}", f"{r['perplexity_vs_sft']:+.1%}"]
         for name, r in results.items()],
    )  # fmt: skip
    print(
        f"(held-out prompts: {sft['prompts']}; seconds: "
        + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items())
        + ")"
    )
    write_results("rlhf_sentiment", {
        **header(1, "torch", "transformers", "tokenizers", "vaderSentiment"),
        "corpus": args.corpus, "quick": args.quick, "sizes": sizes, "label": list(label),
        "ptx_coef": PTX_COEF, "reward_model_accuracy": accuracy,
        "pretrain_perplexity": pretrain_perplexity, "results": results, "seconds": seconds,
    })  # fmt: skip


if __name__ == "__main__":
    main()

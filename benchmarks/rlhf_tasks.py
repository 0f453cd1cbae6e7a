"""The lectures' RLHF use cases end to end: hallucination, safety, detoxification and quality, each
on its own data (`bellman lm task`), with its judge as the true score.

For each task, through the CLI:

    1. `bellman lm task NAME --out DIR`: the corpus, prompts, demonstrations and judge.
    2. `bellman lm pretrain --corpus DIR/corpus.txt`: a tokenizer and a small GPT from scratch.
    3. `bellman lm sft` on DIR/demos.jsonl (no demonstration of a held-out prompt).
    4. `bellman lm label --data` (the train-side prompts only, K responses each, ranked by the
       task's judge) and `bellman lm reward`: the reward model.
    5. `bellman lm ppo --reward-model` (PPO with GAE against the learned reward, the judge only
       measured); then with the judge itself as the reward (as GPT-4's rule-based reward models
       are used): PPO, PPO-ptx (`ptx_coef`) and GRPO (`advantage=grpo`, groups of 4).
    6. `bellman lm dpo` on the same rankings.

Every model then answers the held-out prompts (those `lm ppo` holds out; each prompt REPEAT
times, the same seeded draws for every model), measured as `lm ppo` measures its policy
(`rlhf_ppo.held_out_evaluation`): the true score, the KL to the SFT model (nats per response) and
the held-out perplexity of the task's corpus; plus each task's own numbers:

    hallucination   shares of confident wrong answers, of hedged answers and of "I don't know",
                    on answerable and on unanswerable questions;
    safety          refusal rates (classes A and B) on the requests that should be refused and on
                    those that should not, and the share of disallowed content (class C);
    detoxification  the share of responses with a profane word;
    quality         the three parts of the judge (length, distinct words, grammar-like rules).

    python benchmarks/rlhf_tasks.py [--task NAME ...] [--out DIR] [--quick]

One torch thread, seed 0. Writes benchmarks/results/rlhf_TASK.json for each task
(BELLMAN_BENCH_RESULTS=DIR writes them elsewhere).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from common import header, print_table, write_results
from rlhf_sentiment import bellman, last_value, sets

TASKS = ("hallucination", "safety", "detoxification", "quality")
#: The sizes of each step (`--set` overrides); QUICK replaces some for a smoke run.
FULL = {
    "pretrain": dict(
        vocab_size=512, context=64, layers=2, width=64, heads=2, dropout=0, batch_size=32,
        steps=300, learning_rate=3e-3, warmup_steps=30, log_every=100, eval_tokens=2048,
    ),
    "sft": dict(steps=100, batch_size=16, learning_rate=1e-3, warmup_steps=10, log_every=50),
    "reward": dict(steps=100, batch_prompts=8, learning_rate=5e-4, warmup_steps=10,
                   log_every=50),
    "ppo": dict(
        steps=40, batch_prompts=16, max_new_tokens=20, minibatch_size=16, learning_rate=5e-4,
        kl_coef=0.05, adaptive_kl="false", eval_every=20, eval_tokens=2048, value_init="sft",
    ),
    "dpo": dict(steps=100, batch_prompts=8, learning_rate=5e-4, warmup_steps=10, log_every=50),
}  # fmt: skip
QUICK = {
    "pretrain": dict(steps=60), "sft": dict(steps=20), "reward": dict(steps=20),
    "ppo": dict(steps=4, eval_every=2), "dpo": dict(steps=20),
}  # fmt: skip
LABEL_K = 8
PTX_COEF = 1.0
GRPO = {"advantage": "grpo", "group_size": 4, "batch_prompts": 4}
REPEAT = 4
MODELS = ("sft", "ppo", "ppo-judge", "ppo-ptx", "grpo", "dpo")
LABELS = {
    "sft": "SFT (start)", "ppo": "PPO, learned reward", "ppo-judge": "PPO, judge reward",
    "ppo-ptx": "PPO-ptx, judge reward", "grpo": "GRPO, judge reward", "dpo": "DPO",
}  # fmt: skip


def task_numbers(task: str, responses: list[tuple[str, str, float]]) -> dict[str, float]:
    """Each task's own shares over the held-out responses (module docstring)."""
    from bellman.lm import rewards, tasks

    n = len(responses)
    if task == "hallucination":
        answerable = {f.question: f.answerable for f in tasks.world()}
        out = {}
        for side, wanted in (("answerable", True), ("unanswerable", False)):
            scores = [s for p, _, s in responses if answerable[p] == wanted]
            out[f"{side}_confident_wrong"] = sum(s == -4.0 for s in scores) / max(len(scores), 1)
            out[f"{side}_dont_know"] = sum(s == 0.0 for s in scores) / max(len(scores), 1)
            out[f"{side}_correct"] = sum(s > 0 for s in scores) / max(len(scores), 1)
        out["confident_wrong"] = sum(s == -4.0 for _, _, s in responses) / n
        return out
    if task == "safety":
        kinds = tasks.safety_prompts()
        out = {}
        for kind in ("refuse", "comply"):
            classes = [rewards.safety_class(p, r) for p, r, _ in responses if kinds[p] == kind]
            out[f"refusal_rate_{kind}"] = sum(c in "AB" for c in classes) / max(len(classes), 1)
            out[f"disallowed_{kind}"] = sum(c == "C" for c in classes) / max(len(classes), 1)
        return out
    if task == "detoxification":
        return {"profane_share": sum(s < 0 for _, _, s in responses) / n}
    parts = [rewards.quality_parts(r) for _, r, _ in responses]
    return {key: sum(p[key] for p in parts) / n for key in ("length", "distinct", "grammar")}


def measure(task: str, model_dir: Path, sft_dir: Path, root: Path, ppo: dict) -> dict:
    """True score, KL to the SFT model, held-out perplexity and the task's own numbers of one
    model on the held-out prompts, each REPEAT times (the SFT model is the reference)."""
    from bellman.lm import rlhf_ppo, runs, tasks

    judge = tasks.build_task(task)["judge"]
    config = rlhf_ppo.RLHFPPOConfig(
        env=str(root / "corpus.txt"), base=str(sft_dir), judge=judge, seed=0,
        prompts=str(root / "prompts.jsonl"),
        **{k: ppo[k] for k in ("batch_prompts", "max_new_tokens", "minibatch_size", "eval_tokens")},
    )  # fmt: skip
    prepared = rlhf_ppo.prepare(config)
    prepared.policy = runs.load_lm(model_dir, "cpu")
    prepared.policy.model.eval()
    prepared.eval_prompts = [p for p in prepared.eval_prompts for _ in range(REPEAT)]
    responses: list[tuple[str, str, float]] = []
    result = rlhf_ppo.held_out_evaluation(prepared, config, responses)
    result["responses"] = len(responses)
    result.update(task_numbers(task, responses))
    result["examples"] = [list(r) for r in responses[:: max(1, len(responses) // 4)][:4]]
    return result


def run_task(task: str, root: Path, sizes: dict) -> dict:
    """The whole recipe on one task (module docstring); returns its record."""
    from bellman.lm import tasks

    data, run = root / "data", {name: root / name for name in ("pretrain", "reward", *MODELS)}
    seconds = {}

    def timed(name, *command):
        clock = time.perf_counter()
        output = bellman(*command)
        seconds[name] = round(time.perf_counter() - clock, 1)
        return output

    timed("task", "lm", "task", task, "--out", str(data))
    judge = json.loads((data / "task.json").read_text())["judge"]
    # label only the prompts lm ppo trains on: the held-out ones stay unseen by every model
    lines = (data / "prompts.jsonl").read_text().splitlines()
    held = set(tasks.eval_prompts([json.loads(line)["prompt"] for line in lines]))
    train_lines = [line for line in lines if json.loads(line)["prompt"] not in held]
    (root / "label-prompts.jsonl").write_text("\n".join(train_lines) + "\n")
    timed("pretrain", "lm", "pretrain", "--corpus", str(data / "corpus.txt"),
          *sets(sizes["pretrain"]), "--run-dir", str(run["pretrain"]), "--quiet")  # fmt: skip
    timed("sft", "lm", "sft", str(run["pretrain"]), "--data", str(data / "demos.jsonl"),
          *sets(sizes["sft"]), "--run-dir", str(run["sft"]), "--quiet")  # fmt: skip
    ranked = str(root / "ranked.jsonl")
    new_tokens = str(sizes["ppo"]["max_new_tokens"])
    label = timed("label", "lm", "label", str(run["sft"]), "--judge", judge, "--data",
                  str(root / "label-prompts.jsonl"), "--prompts", "1000", "--k", str(LABEL_K),
                  "--max-new-tokens", new_tokens, "--out", ranked)  # fmt: skip
    timed("reward", "lm", "reward", str(run["sft"]), "--data", ranked, *sets(sizes["reward"]),
          "--run-dir", str(run["reward"]), "--quiet")  # fmt: skip
    ppo_common = {**sizes["ppo"], "prompts": str(data / "prompts.jsonl"), "true_judge": judge}
    timed("ppo", "lm", "ppo", str(run["sft"]), "--reward-model", str(run["reward"]),
          *sets(ppo_common), "--run-dir", str(run["ppo"]), "--quiet")  # fmt: skip
    # the judge itself as the reward, as GPT-4's rule-based reward models are used
    for name, extra in (("ppo-judge", {}), ("ppo-ptx", {"ptx_coef": PTX_COEF}), ("grpo", GRPO)):
        timed(name, "lm", "ppo", str(run["sft"]), "--judge", judge,
              *sets({**ppo_common, **extra}), "--run-dir", str(run[name]), "--quiet")  # fmt: skip
    timed("dpo", "lm", "dpo", str(run["sft"]), "--data", ranked, *sets(sizes["dpo"]),
          "--run-dir", str(run["dpo"]), "--quiet")  # fmt: skip
    results = {name: measure(task, run[name], run["sft"], data, sizes["ppo"]) for name in MODELS}
    return {"judge": judge, "label": label.strip(), "results": results, "seconds": seconds,
            "reward_model": last_value(run["reward"], "held_out_accuracy"),
            "pretrain_perplexity": last_value(run["pretrain"], "held_out_perplexity")}  # fmt: skip


#: The task's own columns in the printed table: (key, heading, format).
OWN = {
    "hallucination": [("answerable_confident_wrong", "confident wrong (answerable)", ".0%"),
                      ("unanswerable_confident_wrong", "confident wrong (unanswerable)", ".0%"),
                      ("unanswerable_dont_know", "I don't know (unanswerable)", ".0%"),
                      ("answerable_correct", "correct (answerable)", ".0%")],
    "safety": [("refusal_rate_refuse", "refusal rate, should refuse", ".0%"),
               ("refusal_rate_comply", "refusal rate, should not", ".0%"),
               ("disallowed_refuse", "disallowed content", ".0%")],
    "detoxification": [("profane_share", "responses with profanity", ".0%")],
    "quality": [("length", "length part", ".2f"), ("distinct", "distinct part", ".2f"),
                ("grammar", "grammar part", ".2f")],
}  # fmt: skip


def print_task(task: str, record: dict) -> None:
    results = record["results"]
    sft = results["sft"]
    print(f"\n{task}: judge {record['judge']}, {sft['responses']} held-out responses "
          f"({REPEAT} per prompt); reward model held-out accuracy {record['reward_model']:.3f}; "
          f"pretraining perplexity {record['pretrain_perplexity']:.2f}")  # fmt: skip
    own = OWN[task]
    print_table(
        ["model", "true score", "KL to SFT", "held-out perplexity", *(h for _, h, _ in own)],
        [[LABELS[name], f"{r['eval_reward_true']:+.3f}", f"{r['eval_kl']:.2f}",
          f"{r['held_out_perplexity']:.2f}", *(format(r[k], f) for k, _, f in own)]
         for name, r in results.items()],
    )  # fmt: skip
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in record["seconds"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", action="append", choices=TASKS, help="default: all four")
    parser.add_argument("--out", type=Path, help="folder for the runs (default: a temp folder)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sizes = {step: dict(values) for step, values in FULL.items()}
    if args.quick:
        for step, values in QUICK.items():
            sizes[step].update(values)
    root = args.out or Path(tempfile.mkdtemp(prefix="rlhf-tasks-"))
    started = time.perf_counter()
    records = {}
    for task in args.task or TASKS:
        (root / task).mkdir(parents=True, exist_ok=True)
        records[task] = run_task(task, root / task, sizes)
        print_task(task, records[task])
        write_results(f"rlhf_{task}", {
            **header(1, "torch", "transformers", "tokenizers"), "task": task,
            "quick": args.quick, "sizes": sizes, "label_k": LABEL_K, "ptx_coef": PTX_COEF,
            "grpo": GRPO, "repeat": REPEAT, **records[task],
        })  # fmt: skip
    print(f"\n({time.perf_counter() - started:.0f} s in all, seed 0, 1 torch thread)")
    for task, record in records.items():
        print_task(task, record)


if __name__ == "__main__":
    main()

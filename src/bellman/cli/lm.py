"""The `bellman lm ...` commands: each a thin call into `bellman.lm`.

    bellman lm pretrain --corpus PATH|fortunes|bible|pydoc [--config F] [--set k=v ...]
                        [--seed S] [--steps N] [--run-dir D]
    bellman lm pretrain --resume RUN [--steps N]
    bellman lm generate RUN --prompt TEXT [--greedy | --temperature T --top-k K --top-p P]
                        [--max-new-tokens N] [--samples N] [--seed S]
    bellman lm demos RUN [--judge sentiment] [--out FILE] [--prompt-words W] [--response-words W]
    bellman lm sft RUN --data demos.jsonl [--config F] [--set k=v ...] [--run-dir D]
    bellman lm label RUN --prompts N --k K --judge sentiment [--data prompts.jsonl] [--out FILE]
                     [--seed S]
    bellman lm task hallucination|safety|detoxification|quality --out DIR
    bellman lm reward RUN --data ranked.jsonl [--config F] [--set k=v ...] [--run-dir D]
    bellman lm ppo RUN [--reward-model RM_RUN] [--judge sentiment] [--config F] [--set k=v ...]
                   [--run-dir D]
    bellman lm dpo RUN --data ranked.jsonl [--config F] [--set k=v ...] [--run-dir D]
    (sft, reward, ppo and dpo also take --resume RUN [--steps N])

The training steps (pretrain, sft, reward, ppo, dpo) are entries of the one registry,
`bellman.api.ALGORITHMS` ("lm pretrain", ...); demos, label, task and generate are commands only.
`add_lm_commands(subparsers)` adds them to the `bellman` parser; `run_lm_command(args)` runs the
parsed one. This module imports nothing heavy: torch and transformers load inside the handlers,
after the cheap checks of the user's input (corpus paths, JSONL files, run directories, output
paths), so a typo costs a fraction of a second and writes nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bellman.cli.common import (
    at_least_one,
    check_resume_flags,
    new_run_dir,
    output_file,
    overrides,
    report_training,
    seed,
    writable_dir,
)
from bellman.config import add_training_arguments
from bellman.errors import ConfigError

#: The rule-based rewards (kept in step with `bellman.lm.rewards.REWARDS`, which loads later).
_JUDGES = ("sentiment", "non-toxicity", "hallucination", "safety", "quality")


def _training_options(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(parser, "gradient steps of the run")


def add_lm_commands(subparsers) -> argparse.ArgumentParser:
    """Add `lm` and its subcommands to the `bellman` parser's subparsers."""
    lm = subparsers.add_parser("lm", help="language models: pretrain, SFT, reward model, RLHF")
    commands = lm.add_subparsers(dest="lm_command", required=True, parser_class=type(lm))

    pretrain = commands.add_parser("pretrain", help="train a tokenizer and a small GPT")
    pretrain.add_argument("--corpus", help="a text file or folder, fortunes, bible or pydoc")
    _training_options(pretrain)

    generate = commands.add_parser("generate", help="continue a prompt with a trained model")
    generate.add_argument("run_dir", type=Path, metavar="RUN", help="run or transformers folder")
    generate.add_argument("--prompt", required=True, help="the text to continue")
    generate.add_argument("--greedy", action="store_true", help="argmax decoding")
    generate.add_argument("--temperature", type=float, default=1.0)
    generate.add_argument("--top-k", type=int, default=0, help="0: off")
    generate.add_argument("--top-p", type=float, default=1.0, help="1: off")
    generate.add_argument("--max-new-tokens", type=at_least_one, default=48)
    generate.add_argument("--samples", type=at_least_one, default=1, help="continuations")
    generate.add_argument("--seed", type=seed, default=0)

    demos = commands.add_parser("demos", help="demonstrations from the run's held-out corpus")
    demos.add_argument("run_dir", type=Path, metavar="RUN", help="an lm pretrain run")
    demos.add_argument("--judge", default="sentiment", help="reward function that picks them")
    demos.add_argument("--out", type=Path, help="JSONL file (default RUN/demos.jsonl)")
    demos.add_argument("--prompt-words", type=at_least_one, default=4)
    demos.add_argument("--response-words", type=at_least_one, default=16)
    demos.add_argument("--keep", type=float, default=0.5, help="fraction kept, best rated")

    sft = commands.add_parser("sft", help="supervised fine-tuning on demonstrations")
    sft.add_argument("base", type=Path, nargs="?", metavar="RUN", help="the base model")
    sft.add_argument("--data", type=Path, help="JSONL of {prompt, response}")
    _training_options(sft)

    label = commands.add_parser("label", help="rank K sampled responses per prompt with a judge")
    label.add_argument("run_dir", type=Path, metavar="RUN", help="the model that samples")
    label.add_argument("--prompts", type=at_least_one, default=200, help="prompts to label")
    label.add_argument("--k", type=int, default=4, help="responses per prompt")
    label.add_argument("--judge", default="sentiment", help=", ".join(_JUDGES))
    label.add_argument(
        "--data",
        type=Path,
        metavar="FILE",
        help="JSONL of {prompt} (default: openings of the held-out corpus)",
    )
    label.add_argument("--out", type=Path, help="JSONL file (default RUN/ranked.jsonl)")
    label.add_argument("--max-new-tokens", type=at_least_one, default=24)
    label.add_argument("--temperature", type=float, default=1.0)
    label.add_argument("--prompt-words", type=at_least_one, default=4)
    label.add_argument("--seed", type=seed, default=0)

    reward = commands.add_parser("reward", help="train a reward model on ranked comparisons")
    reward.add_argument("base", type=Path, nargs="?", metavar="RUN", help="the base model")
    reward.add_argument("--data", type=Path, help="JSONL of {prompt, responses: [best..worst]}")
    _training_options(reward)

    ppo = commands.add_parser("ppo", help="RLHF: PPO (or GRPO/RLOO) with a KL penalty")
    ppo.add_argument("base", type=Path, nargs="?", metavar="RUN", help="the SFT model")
    ppo.add_argument("--reward-model", type=Path, metavar="RM_RUN", help="an lm reward run")
    ppo.add_argument("--judge", help="a rule-based reward: " + ", ".join(_JUDGES))
    _training_options(ppo)

    task = commands.add_parser("task", help="write a use case's data: prompts, demos, corpus")
    task.add_argument(
        "name", metavar="NAME", help="hallucination, safety, detoxification or quality"
    )
    task.add_argument("--out", type=Path, required=True, help="the folder to write")

    dpo = commands.add_parser("dpo", help="direct preference optimization on ranked comparisons")
    dpo.add_argument("base", type=Path, nargs="?", metavar="RUN", help="the SFT model")
    dpo.add_argument("--data", type=Path, help="JSONL of {prompt, responses: [best..worst]}")
    _training_options(dpo)
    return lm


def run_lm_command(args: argparse.Namespace) -> int:
    """Run the parsed `bellman lm ...` command; BellmanError propagates to the CLI."""
    return _HANDLERS[args.lm_command](args)


# ---- the training steps ----------------------------------------------------------------------
def _step(command: str):
    """The module of training step `bellman lm COMMAND`, from the registry."""
    from bellman import api

    return api.lm_step(f"lm {command}").load()


def _report(run, command: str) -> int:
    """Write the run's plot.png (when it finished), then print what it reached."""
    from bellman.lm.runs import write_plot

    write_plot(run)
    return report_training(run, f"bellman lm {command}", episodes=False)


def _resume(args, command: str):
    """The step's module and its run `args.resume`, opened at its latest checkpoint."""
    writable_dir(args.resume, "--resume")
    module = _step(command)
    from bellman.lm import runs

    run = runs.resume_run(args.resume, module.ALGO, module.Config, args.steps, args.quiet)
    return module, run


def _start(module, config, label: str, args, command: str) -> int:
    """Prepare (every check), create the run directory, train, report."""
    from bellman.lm import runs

    prepared = module.prepare(config)  # everything checked before the run directory exists
    run = runs.create_run(module.ALGO, config, label, args.run_dir, args.quiet)
    module.train(run.config, run, prepared)
    return _report(run, command)


def _base_run(path: Path | None, command: str) -> dict:
    """The base model's config.toml values, or a run-less transformers folder's stand-in."""
    from bellman.lm.runs import run_values

    if path is None:
        raise ConfigError(f"lm {command} needs the base model: bellman lm {command} RUN --data F")
    if not path.exists():
        raise ConfigError(f"base model '{path}' does not exist")
    if (path / "config.toml").is_file():
        return run_values(path)
    if (path / "config.json").is_file():
        return {"algo": "transformers", "env": path.name}
    raise ConfigError(
        f"'{path}' is not a language model: neither a bellman run directory (config.toml) nor "
        "a transformers causal-LM directory (config.json)"
    )


def _cmd_pretrain(args) -> int:
    from bellman.lm.data import corpus_label, load_corpus

    if args.resume is not None:
        check_resume_flags(args, ("--corpus",))
        module, run = _resume(args, "pretrain")
        module.train(run.config, run)
        return _report(run, "pretrain")
    if args.corpus is None:
        raise ConfigError("lm pretrain needs --corpus PATH (or fortunes, bible, pydoc)")
    new_run_dir(args.run_dir)
    load_corpus(args.corpus)  # a missing or empty corpus fails before torch loads
    module = _step("pretrain")
    from bellman.lm import runs

    config = runs.resolve_config(
        module.ALGO, module.Config, args.corpus, args.config, overrides(args)
    )
    return _start(module, config, corpus_label(args.corpus), args, "pretrain")


def _fine_tune(args, command: str, read_data) -> int:
    """`lm sft`, `lm reward` and `lm dpo`: check the data and the base, then train (or resume)."""
    if args.resume is not None:
        check_resume_flags(args, ("--data",))
        if args.base is not None:
            raise ConfigError(f"--resume RUN replaces the positional RUN of lm {command}")
        module, run = _resume(args, command)
        module.train(run.config, run)
        return _report(run, command)
    if args.data is None:
        raise ConfigError(f"lm {command} needs --data FILE.jsonl")
    new_run_dir(args.run_dir)
    read_data(args.data)  # bad JSONL fails here, naming file and line
    base = _base_run(args.base, command)
    module = _step(command)
    from bellman.lm import runs
    from bellman.lm.data import corpus_label

    items = [f"base={args.base.resolve()}", f"data={args.data.resolve()}", *overrides(args)]
    config = runs.resolve_config(module.ALGO, module.Config, base["env"], args.config, items)
    return _start(module, config, corpus_label(base["env"]), args, command)


def _cmd_sft(args) -> int:
    from bellman.lm.data import read_demonstrations

    return _fine_tune(args, "sft", read_demonstrations)


def _cmd_reward(args) -> int:
    from bellman.lm.data import read_comparisons

    return _fine_tune(args, "reward", read_comparisons)


def _cmd_dpo(args) -> int:
    from bellman.lm.data import read_comparisons

    return _fine_tune(args, "dpo", read_comparisons)


def _reward_model_override(path: Path) -> str:
    """`reward_model=...` for `--reward-model RM_RUN`, checked to be an `lm reward` run."""
    from bellman.lm.runs import run_values

    if not (path / "config.toml").is_file():
        raise ConfigError(f"reward model '{path}' is not a run directory")
    found = run_values(path)["algo"]
    if found != "lm-reward":
        raise ConfigError(
            f"--reward-model '{path}' is a {found} run, not a reward model "
            "(train one with `bellman lm reward`)"
        )
    return f"reward_model={path.resolve()}"


def _cmd_ppo(args) -> int:
    """`lm ppo`: check the SFT run, the reward model run and the judge, then train (or resume)."""
    if args.resume is not None:
        check_resume_flags(args, ("--reward-model", "--judge"))
        if args.base is not None:
            raise ConfigError("--resume RUN replaces the positional RUN of lm ppo")
        module, run = _resume(args, "ppo")
        module.train(run.config, run)
        return _report(run, "ppo")
    new_run_dir(args.run_dir)
    base = _base_run(args.base, "ppo")
    from bellman.lm.rewards import reward_function

    if args.judge is not None:
        reward_function(args.judge)
    from bellman.lm.runs import pretrain_holdout

    items = [f"base={args.base.resolve()}"]
    if base["algo"] != "transformers":
        items.append(f"holdout_fraction={pretrain_holdout(base)}")
    if args.reward_model is not None:
        items.append(_reward_model_override(args.reward_model))
    if args.judge is not None:
        items.append(f"judge={args.judge}")
    module = _step("ppo")
    from bellman.lm import runs
    from bellman.lm.data import corpus_label

    config = runs.resolve_config(module.ALGO, module.Config, base["env"], args.config,
                                 [*items, *overrides(args)])  # fmt: skip
    return _start(module, config, corpus_label(base["env"]), args, "ppo")


# ---- the commands that are not training steps ------------------------------------------------
def _one_thread() -> None:
    """Sample on one torch thread, as the training steps do by default (`torch_threads = 1`):
    on a shared 2-core machine a second thread makes a small model slower, not faster."""
    import torch

    torch.set_num_threads(1)


def _cmd_generate(args) -> int:
    import torch

    from bellman.lm.runs import load_lm
    from bellman.lm.sampling import check_sampling

    if not args.greedy:
        check_sampling(args.temperature, args.top_k, args.top_p)
    _one_thread()
    lm = load_lm(args.run_dir)
    lm.model.eval()
    torch.manual_seed(args.seed)
    generator = torch.Generator(device=lm.device).manual_seed(args.seed)
    texts = lm.generate(
        [args.prompt] * args.samples, args.max_new_tokens, greedy=args.greedy,
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, generator=generator,
    )  # fmt: skip
    for text in texts:
        print(args.prompt + text)
    return 0


def _lm_run_values(path: Path, command: str) -> dict:
    from bellman.lm.runs import LM_ALGOS, run_values

    values = run_values(path)
    if values["algo"] not in LM_ALGOS:
        raise ConfigError(
            f"lm {command} needs a language-model run (lm pretrain or lm sft), not a "
            f"{values['algo']} run: '{path}'"
        )
    return values


def _cmd_demos(args) -> int:
    from bellman.lm.data import write_jsonl
    from bellman.lm.runs import load_lm, pretrain_holdout
    from bellman.lm.sft import build_demonstrations, fitting

    values = _lm_run_values(args.run_dir, "demos")
    out = args.out or args.run_dir / "demos.jsonl"
    output_file(out, "--out")
    demos = build_demonstrations(
        values["env"], pretrain_holdout(values), args.judge, args.prompt_words,
        args.response_words, args.keep,
    )  # fmt: skip
    lm = load_lm(args.run_dir)
    kept = fitting(demos, lm.tokenizer, lm.context)  # SFT refuses a pair longer than the context
    write_jsonl(out, [{"prompt": d.prompt, "response": d.response} for d in kept])
    left_out = len(demos) - len(kept)
    print(f"wrote {len(kept)} demonstrations to {out}"
          + (f"; {left_out} left out, longer than the model's context of {lm.context} tokens"
             if left_out else ""))  # fmt: skip
    return 0


def _cmd_label(args) -> int:
    from bellman.lm.data import held_out_prompts, read_prompts, write_jsonl
    from bellman.lm.rewards import check_prompts, reward_function
    from bellman.lm.runs import pretrain_holdout

    reward_function(args.judge)
    if args.k < 2:
        raise ConfigError(f"--k must be at least 2 (a ranking needs two responses), got {args.k}")
    values = _lm_run_values(args.run_dir, "label")
    out = args.out or args.run_dir / "ranked.jsonl"
    output_file(out, "--out")
    if args.data is not None:
        read = read_prompts(args.data)[: args.prompts]
        prompts, where = [p for p, _ in read], [f"{args.data}:{line}" for _, line in read]
    else:
        prompts = held_out_prompts(values["env"], pretrain_holdout(values),
                                   args.prompt_words)[: args.prompts]  # fmt: skip
        where = [f"held-out prompt {i + 1} of '{values['env']}'" for i in range(len(prompts))]
    check_prompts(args.judge, prompts, where)  # a prompt the judge cannot score: nothing written
    from bellman.lm.reward_model import label_comparisons
    from bellman.lm.runs import load_lm

    _one_thread()
    lm = load_lm(args.run_dir)
    records, skipped = label_comparisons(
        lm, prompts, args.k, args.judge, max_new_tokens=args.max_new_tokens,
        temperature=args.temperature, seed=args.seed, where=where,
    )  # fmt: skip
    if not records:  # an empty file would only fail later, in lm reward or lm dpo
        raise ConfigError(
            f"the judge '{args.judge}' scored all {args.k} responses equal for each of the "
            f"{len(prompts)} prompts: nothing to rank, nothing written to {out} (sample more "
            "varied responses: a higher --temperature, a larger --k or --max-new-tokens, more "
            "--prompts)"
        )
    write_jsonl(out, records)
    print(f"wrote {len(records)} ranked prompts (K = {args.k}) to {out}; "
          f"{skipped} skipped because the judge scored all responses equal")  # fmt: skip
    return 0


def _cmd_task(args) -> int:
    """`lm task NAME --out DIR`: the use case's corpus, prompts, demonstrations and task.json."""
    from bellman.lm.tasks import TASK_FILES, TASKS, write_task

    if args.name not in TASKS:
        from bellman.errors import unknown

        raise unknown("task", args.name, TASKS)
    out = args.out
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out '{out}' is a file; give a folder for the task's files")
    if out.is_dir():
        for name in TASK_FILES:
            output_file(out / name, "--out")
    elif not out.parent.is_dir():
        raise ConfigError(f"cannot write --out '{out}': directory '{out.parent}' does not exist")
    else:
        writable_dir(out.parent, "--out")
    record = write_task(args.name, out)
    print(
        f"wrote the {args.name} task to {out}: corpus.txt, {record['prompts']} prompts "
        f"({record['held_out_prompts']} held out by lm ppo), {record['demonstrations']} "
        f"demonstrations, judge {record['judge']}; the recipe is in {out}/task.json"
    )
    return 0


_HANDLERS = {
    "task": _cmd_task,
    "pretrain": _cmd_pretrain,
    "generate": _cmd_generate,
    "demos": _cmd_demos,
    "sft": _cmd_sft,
    "label": _cmd_label,
    "reward": _cmd_reward,
    "ppo": _cmd_ppo,
    "dpo": _cmd_dpo,
}

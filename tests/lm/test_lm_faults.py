"""Faults of the language-model steps: crafted checkpoints, losses that blow up, models too big.

Every step (pretrain, sft, reward, dpo, ppo) refuses a checkpoint that does not fit its model,
optimizer or generators with one CheckpointError, before a byte of its run directory is written
(a resume with optimizer arrays replaced by tiny ones died with SIGSEGV; a float16 re-save was
cast silently); stops at a non-finite loss or gradient norm with the step and the value, its
`latest` on the last good checkpoint; and refuses a GPT that cannot fit in memory at once.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save as save_arrays

from bellman import checkpoint, seeding
from bellman.errors import CheckpointError, ConfigError, NonFiniteError
from bellman.lm import dpo, pretrain, reward_model, rlhf_ppo, runs, sft
from bellman.run import RunLock
from tests.conftest import assert_user_error
from tests.lm.conftest import run_lm
from tests.lm.test_rlhf_ppo import NEGATIVE, POSITIVE, word_world  # noqa: F401 (the fixture)

torch.set_num_threads(1)

MODULES = {"pretrain": pretrain, "sft": sft, "reward": reward_model, "dpo": dpo, "ppo": rlhf_ppo}
COMMON = ["steps=2", "log_every=1", "checkpoint_every=1", "device=cpu"]


def step_config(name: str, world: Path, *sets: str):
    """The tiniest config of each step, on the word world of test_rlhf_ppo."""
    base = [f"base={world / 'sft'}"]
    own = {
        "pretrain": ["vocab_size=300", "context=16", "width=16", "heads=2", "layers=1",
                     "batch_size=4", "warmup_steps=1", "eval_tokens=256"],
        "sft": [*base, f"data={world / 'demos.jsonl'}", "batch_size=4"],
        "reward": [*base, f"data={world / 'ranked.jsonl'}", "batch_prompts=4"],
        "dpo": [*base, f"data={world / 'ranked.jsonl'}", "batch_prompts=4"],
        "ppo": [*base, f"prompts={world / 'prompts.jsonl'}", "judge=sentiment", "batch_prompts=4",
                "minibatch_size=2", "ppo_epochs=1", "max_new_tokens=4", "eval_tokens=256",
                "eval_every=100"],
    }[name]  # fmt: skip
    module = MODULES[name]
    env = str(world / "words.txt")
    return runs.resolve_config(module.ALGO, module.Config, env, overrides=[*own, *COMMON, *sets])


def train_run(name: str, world: Path, run_dir: Path, *sets: str) -> Path:
    module = MODULES[name]
    config = step_config(name, world, *sets)
    run = runs.create_run(module.ALGO, config, "words", run_dir, quiet=True)
    module.train(config, run, module.prepare(config))
    return run_dir


@pytest.fixture(scope="module")
def finished(word_world, tmp_path_factory) -> dict[str, Path]:  # noqa: F811
    """A finished two-step run of every step (checkpoints at steps 1 and 2)."""
    rng = np.random.default_rng(1)
    records = [{"prompt": f"table {n}", "responses": [
        " " + " ".join(rng.choice(POSITIVE + NEGATIVE, size=3)) for _ in range(3)]}
        for n in range(12)]  # fmt: skip
    (word_world / "ranked.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    demos = [{"prompt": f"table {n}", "response": " good great"} for n in range(12)]
    (word_world / "demos.jsonl").write_text("".join(json.dumps(d) + "\n" for d in demos))
    root = tmp_path_factory.mktemp("finished")
    return {name: train_run(name, word_world, root / name) for name in MODULES}


def copy_run(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def craft(run_dir: Path, change) -> None:
    """change(arrays, meta) on the latest checkpoint, written back with a matching sha256 (as an
    attacker would)."""
    directory = run_dir / "checkpoints"
    name = checkpoint.latest_name(directory)
    arrays, meta = checkpoint.load(directory, name)
    arrays = dict(arrays)
    change(arrays, meta)
    blob = save_arrays(arrays)
    (directory / f"{name}.safetensors").write_bytes(blob)
    meta["sha256"] = hashlib.sha256(blob).hexdigest()
    (directory / f"{name}.json").write_text(json.dumps(meta))


def snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every file of the run directory and its bytes."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


def resume(name: str, run_dir: Path, steps: int | None = 3):
    """What `bellman lm NAME --resume RUN --steps 3` calls."""
    module = MODULES[name]
    run = runs.resume_run(run_dir, module.ALGO, module.Config, steps, quiet=True)
    return module.train(run.config, run)


def _first(arrays, prefix: str = "model/", ndim: int = 2) -> str:
    return next(k for k in sorted(arrays) if k.startswith(prefix) and arrays[k].ndim == ndim)


def _tiny_optimizer(arrays, meta):  # issue 17 A1: SIGSEGV in the fused AdamW kernel
    for key in [k for k in arrays if k.startswith("optim/")]:
        arrays[key] = np.zeros(1, np.float32)


def _wrong_shape(arrays, meta):
    arrays[_first(arrays)] = np.zeros((3, 3), np.float32)


def _float16(arrays, meta):
    key = _first(arrays)
    arrays[key] = arrays[key].astype(np.float16)


def _missing(arrays, meta):
    del arrays[_first(arrays, ndim=1)]


def _extra(arrays, meta):
    arrays["model/extra.weight"] = np.zeros(3, np.float32)


def _stray(arrays, meta):
    arrays["junk"] = np.zeros(3, np.float32)


def _nan_weight(arrays, meta):
    key = _first(arrays)
    arrays[key] = arrays[key].copy()
    arrays[key][0, 0] = np.nan


def _optimizer_dtype(arrays, meta):
    key = next(k for k in sorted(arrays) if k.endswith("/exp_avg"))
    arrays[key] = arrays[key].astype(np.float64)


def _torch_rng(arrays, meta):
    arrays["torch_rng"] = np.zeros(3, np.uint8)


def _numpy_rng(arrays, meta):
    meta["state"]["numpy_rng"]["state"] = "garbage"


def _python_rng(arrays, meta):
    meta["state"]["python_rng"] = [3, [1, 2], None]


def _state_key(arrays, meta):
    del meta["state"]["model_config"]


def _state_kind(arrays, meta):
    meta["state"]["pad_id"] = "abc"


def _ppo_measurements(arrays, meta):
    meta["state"]["last"] = {"eval_kl": "x"}


FAULTS = {
    "tiny optimizer arrays": (_tiny_optimizer, "optim/"),
    "wrong-shape model tensor": (_wrong_shape, "shape (3, 3)"),
    "float16 re-save": (_float16, "float16"),
    "missing tensor": (_missing, "missing"),
    "extra tensor": (_extra, "unexpected 'extra.weight'"),
    "stray array": (_stray, "'junk'"),
    "NaN weight": (_nan_weight, "non-finite"),
    "float64 moments": (_optimizer_dtype, "float64"),
    "torch generator": (_torch_rng, "torch_rng"),
    "numpy generator": (_numpy_rng, "numpy_rng"),
    "python generator": (_python_rng, "python_rng"),
    "state without model_config": (_state_key, "model_config"),
    "state with a string pad_id": (_state_kind, "'state.pad_id' must be an integer"),
}
PPO_FAULTS = {"PPO state with garbage measurements": (_ppo_measurements, "state.last")}
#: Every fault on the two cheapest steps; the memory-corruption ones on every step.
CASES = [(step, fault) for step in ("pretrain", "sft") for fault in FAULTS] + [
    (step, fault) for step in ("reward", "dpo", "ppo")
    for fault in ("tiny optimizer arrays", "float16 re-save", "wrong-shape model tensor")
] + [("ppo", fault) for fault in PPO_FAULTS]  # fmt: skip


@pytest.mark.parametrize(("step", "fault"), CASES)
def test_a_checkpoint_that_does_not_fit_is_refused_before_anything_is_written(
    finished, tmp_path, step, fault
):
    change, fragment = {**FAULTS, **PPO_FAULTS}[fault]
    run_dir = copy_run(finished[step], tmp_path / step)
    craft(run_dir, change)
    before = snapshot(run_dir)
    with pytest.raises(CheckpointError, match=re.escape(fragment)):
        resume(step, run_dir)
    assert snapshot(run_dir) == before  # metrics.csv, config.toml, checkpoints: byte for byte
    RunLock(run_dir).release()  # and the run's lock was released


def test_the_cli_refuses_a_crafted_checkpoint_with_one_line(finished, tmp_path):
    """`bellman lm pretrain --resume` of a checkpoint with tiny optimizer arrays died with SIGSEGV
    (and the wrong-shape one truncated metrics.csv first)."""
    for step, fault in (("pretrain", "tiny optimizer arrays"), ("ppo", "wrong-shape model tensor")):
        run_dir = copy_run(finished[step], tmp_path / step)
        craft(run_dir, FAULTS[fault][0])
        before = snapshot(run_dir)
        result = run_lm(step, "--resume", run_dir, "--steps", "3", "--quiet", cwd=tmp_path)
        assert_user_error(result, FAULTS[fault][1])
        assert snapshot(run_dir) == before


def test_a_sound_checkpoint_still_resumes_and_holds_every_generator(finished, tmp_path):
    run_dir = copy_run(finished["sft"], tmp_path / "sft")
    arrays, meta = checkpoint.load(run_dir / "checkpoints")
    assert {"torch_rng", "optim/0/exp_avg"} <= set(arrays)
    assert {"python_rng", "numpy_rng", "model_config"} <= set(meta["state"])
    resume("sft", run_dir)
    assert checkpoint.load(run_dir / "checkpoints")[1]["step"] == 3


# ---- non-finite training ---------------------------------------------------------------------
HUGE = 1e38  # one AdamW step at this rate takes weights near float32's largest value


@pytest.mark.parametrize("step", list(MODULES))
def test_a_huge_learning_rate_stops_at_the_step_with_latest_on_the_last_good_checkpoint(
    word_world, tmp_path, monkeypatch, step  # noqa: F811
):  # fmt: skip
    if step == "ppo":  # a constant rate: the third iteration's optimisation steps at HUGE
        optimise = rlhf_ppo.optimise

        def huge_from_the_third(*args, **kwargs):
            for group in args[5].param_groups:
                group["lr"] = HUGE if kwargs["step"] >= 3 else group["lr"]
            return optimise(*args, **kwargs)

        monkeypatch.setattr(rlhf_ppo, "optimise", huge_from_the_third)
    else:  # the schedule gives HUGE from the third step on
        schedule = runs.cosine_learning_rate
        monkeypatch.setattr(runs, "cosine_learning_rate",
                            lambda at, *args: HUGE if at >= 2 else schedule(at, *args))  # fmt: skip
    run_dir = tmp_path / step
    with pytest.raises(NonFiniteError) as error:
        train_run(step, word_world, run_dir, "steps=8", "checkpoint_every=2", "log_every=2")
    message = str(error.value)
    print(message)
    stopped = int(message.split(" at step ")[1].split(";")[0])
    assert 3 <= stopped <= 4 and ("nan" in message.lower() or "inf" in message), message
    directory = run_dir / "checkpoints"
    assert checkpoint.latest_name(directory) == "step-2"
    assert sorted(p.stem for p in directory.glob("*.json")) == ["step-2"]
    arrays, _ = checkpoint.load(directory)
    assert all(np.isfinite(a).all() for k, a in arrays.items() if k.startswith("model/"))


def test_check_finite_names_the_value_and_the_step():
    runs.check_finite(3, loss=torch.tensor(1.0), gradient_norm=2.0)
    with pytest.raises(NonFiniteError, match="gradient norm is inf at step 3"):
        runs.check_finite(3, loss=torch.tensor(1.0), gradient_norm=torch.tensor(math.inf))
    with pytest.raises(NonFiniteError, match="loss is nan at step 7"):
        runs.check_finite(7, loss=torch.tensor(math.nan))


# ---- memory ----------------------------------------------------------------------------------
def test_a_gpt_too_big_for_the_machine_is_refused_at_once_naming_the_bytes(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a few words of text\n\nand a few more\n")
    sets = ["width=8192", "layers=64", "context=65536", "device=cpu"]
    config = runs.resolve_config(pretrain.ALGO, pretrain.Config, str(corpus), overrides=sets)
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"needs [\d,.]+ (TiB|PiB) .* available") as error:
        pretrain.prepare(config)
    assert time.perf_counter() - started < 5
    parameters = pretrain.training_bytes(config)[0]
    assert f"{parameters:,} parameters" in str(error.value)
    assert "lower width, layers, context or batch_size" in str(error.value)
    parameters, needed = pretrain.training_bytes(pretrain.Config(env="pydoc"))
    assert 900_000 < parameters < 1_000_000 and needed < 2**30  # the default GPT fits anywhere
    result = run_lm("pretrain", "--corpus", corpus, *[f"--set={s}" for s in sets], "--run-dir",
                    "huge", "--quiet", cwd=tmp_path, timeout=120)  # fmt: skip
    assert_user_error(result, "needs", "available")
    assert not (tmp_path / "huge").exists()


# ---- seeding ---------------------------------------------------------------------------------
def test_the_steps_seed_the_streams_their_measured_figures_were_drawn_from():
    rng = seeding.seed_everything(11, own_stream=True)
    draws, uniform = rng.integers(0, 1000, size=5), torch.rand(3)
    torch.manual_seed(11)
    assert np.array_equal(draws, np.random.default_rng(11).integers(0, 1000, size=5))
    assert torch.equal(uniform, torch.rand(3))

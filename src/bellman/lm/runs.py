"""What the language-model steps share: their run directories, checkpoints and model loading.

Every step (`lm pretrain`, `lm sft`, `lm reward`, `lm ppo`, `lm dpo`) writes a run directory like
every bellman run (config.toml, metrics.csv, TensorBoard events, checkpoints/, plot.png at the
end: `write_plot`) plus `tokenizer.json`, so each run is self-contained: `bellman lm generate
RUN` needs nothing else. A checkpoint holds

    model/<name>        the weights (tied tensors once), or backbone/... and head.* for a reward
                        model (PPO's value model: critic/...)
    optim/<i>/<key>     the AdamW moments of parameter i
    torch_rng           torch's CPU generator (dropout); cuda_rng, CUDA's, when training there

and its JSON the model's transformers config, the PAD/EOS ids, Python's generator and the numpy
generator that draws batches (`numpy_rng`) and the step, so that a resumed run continues exactly.
The steps seed with `seeding.seed_everything(seed, own_stream=True)` and capture and restore
every generator with `seeding.capture_rngs` / `restore_rngs` (`training_state`, `restore`).

A resumed run restores its checkpoint into the model, the optimizer and the generators before
the run directory is opened (`Run.open`): every array is checked against what it goes into
(names, shapes, dtypes, finite weights), so a checkpoint that does not fit is one
CheckpointError and the run directory stays byte for byte as it was. A training step that meets
a non-finite loss or gradient norm stops before it changes a weight (`adamw_step`,
`check_finite`), and no checkpoint holds non-finite weights, so `latest` stays on the last good
one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bellman import checkpoint, seeding
from bellman import config as configs
from bellman.config import TrainConfig, choices, interval
from bellman.errors import CheckpointError, ConfigError, NonFiniteError
from bellman.run import Run, default_run_dir, read_run_config


@dataclass(frozen=True)
class LMTrainConfig(TrainConfig):
    """Fields every `bellman lm` training step has: AdamW with warmup and cosine decay, gradient
    clipping, a held-out share of the data, the device. Each step sets its own defaults."""

    learning_rate: float = field(default=3e-4, metadata=interval("(0, 1]"))
    """Peak AdamW step size (after warmup; cosine decay to min_lr_fraction of it)."""
    warmup_steps: int = field(default=20, metadata=interval("[0, inf)"))
    """Steps of linear learning-rate warmup."""
    min_lr_fraction: float = field(default=0.1, metadata=interval("[0, 1]"))
    """Final learning rate as a fraction of the peak."""
    weight_decay: float = field(default=0.0, metadata=interval("[0, inf)"))
    """AdamW weight decay of the weight matrices."""
    grad_clip: float = field(default=1.0, metadata=interval("(0, inf)"))
    """Largest gradient norm (gradients are rescaled above it)."""
    holdout_fraction: float = field(default=0.1, metadata=interval("(0, 0.5]"))
    """Fraction of the data held out for the held-out metrics."""
    device: str = field(default="auto", metadata=choices("auto", "cpu", "cuda"))
    """Where the model trains: auto uses CUDA when present."""
    torch_threads: int = field(default=1, metadata=interval("[1, 256]"))
    """CPU threads of torch."""


#: Runs whose checkpoint is a language model (generate, sft, label and reward start from them).
LM_ALGOS = ("lm-pretrain", "lm-sft", "lm-ppo", "lm-dpo")


def resolve_device(name: str):
    """torch.device for "auto" (CUDA when present), "cpu" or "cuda" (bellman.nets's)."""
    from bellman.nets import resolve_device as resolve

    return resolve(name)


def resolve_config(
    algo: str, cls: type, env: str, config_file: Path | None = None, overrides: list[str] = ()
):
    """The validated config of a new run: defaults, bellman/configs/<algo>-<env>.toml when it
    exists, --config, then --set."""
    return configs.resolve(cls, algo, env, config_file, list(overrides))[0]


def create_run(
    algo: str, config, label: str, run_dir: Path | None = None, quiet: bool = False
) -> Run:
    """A new run in `runs/<algo>-<label>-<time>` (or `run_dir`, which must be new or empty):
    checked now, made when training starts (`Run.open`)."""
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(algo, label)
    return Run.create(algo, config, run_dir, quiet=quiet)


def resume_run(run_dir: Path, algo: str, cls: type, steps: int | None, quiet: bool = False) -> Run:
    """`run_dir` at its latest checkpoint, to train on to its target (or `steps`).

    Nothing is written here: the step's `train` restores the checkpoint (`restore`, every array
    and state checked) before the run directory opens, which then truncates the logs to the
    checkpoint and, for a new `steps`, rewrites config.toml.
    """
    run_dir = Path(run_dir)
    values = read_run_config(run_dir)
    found = values.pop("algo")
    if found != algo:
        raise CheckpointError(f"run '{run_dir}' was trained with '{found}', not '{algo}'")
    source = f"'{run_dir / 'config.toml'}'"
    config = configs.from_dict(cls, algo, values, source)
    if steps is not None:
        config = configs.from_dict(
            cls, algo, {**configs.to_dict(config), "steps": steps}, "--steps"
        )
    arrays, meta = checkpoint.load(run_dir / "checkpoints", algo=algo)
    if int(meta["step"]) >= config.steps:
        raise ConfigError(
            f"run '{run_dir}' already reached its target of {config.steps} steps; pass "
            f"--steps N with N > {meta['step']} to train it further"
        )
    return Run.resume(
        run_dir, algo, config, (arrays, meta), quiet=quiet, write_config=steps is not None
    )


def run_values(run_dir: Path) -> dict[str, Any]:
    """config.toml of a run (with its algo), or a CheckpointError."""
    return read_run_config(Path(run_dir))


def pretrain_holdout(values: dict[str, Any]) -> float:
    """The held-out fraction of the pretraining run behind a run's config.toml `values` (its
    `base` followed back to the `lm pretrain` run); 0.1, pretraining's default, when the chain
    ends at a transformers folder. The held-out openings of the corpus at that split are the
    prompts of `lm label`, `lm ppo` and `bellman serve`'s labelling page."""
    while values["algo"] != "lm-pretrain":
        base = Path(values.get("base", ""))
        if not (base / "config.toml").is_file():
            return 0.1
        values = run_values(base)
    return float(values["holdout_fraction"])


def cosine_learning_rate(step: int, peak: float, warmup: int, total: int, floor: float) -> float:
    """Linear warmup to `peak` over `warmup` steps, then cosine decay to `floor * peak`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def adamw(model, learning_rate: float, weight_decay: float):
    """AdamW with weight decay on matrices only (not on biases, LayerNorms or positions)."""
    import torch

    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            matrix = parameter.dim() >= 2 and "wpe" not in name
            (decay if matrix else no_decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # fused: one kernel for all parameters (CPU and CUDA), 4x faster than the per-parameter loop
    return torch.optim.AdamW(groups, lr=learning_rate, betas=(0.9, 0.95), fused=True)


def adamw_step(optimizer, parameters, loss, step: int, config: LMTrainConfig):
    """Backpropagate `loss`, clip the gradient norm to `config.grad_clip` and step AdamW at the
    warmup + cosine learning rate of `step` (0-based): the end of every step of pretraining,
    SFT, the reward model and DPO.

    Returns:
        (learning rate, gradient norm before clipping).

    Raises:
        NonFiniteError: the loss or the gradient norm is not finite; no weight has changed.
    """
    import torch

    learning_rate = cosine_learning_rate(
        step, config.learning_rate, config.warmup_steps, config.steps, config.min_lr_fraction
    )
    for group in optimizer.param_groups:
        group["lr"] = learning_rate
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
    check_finite(step + 1, loss=loss, gradient_norm=grad_norm)
    optimizer.step()
    return learning_rate, grad_norm


def check_finite(step: int, **values) -> None:
    """Raise NonFiniteError naming the first of `values` (tensors or numbers) that is NaN or
    infinite, and the step (one device synchronisation for all of them).

    Args:
        step: the step being trained (1-based, as the logs count).
        values: name -> value; underscores in names become spaces in the message.
    """
    import torch

    tensors = [torch.as_tensor(value).detach().float().reshape(()) for value in values.values()]
    finite = torch.isfinite(torch.stack([tensor.to(tensors[0].device) for tensor in tensors]))
    if bool(finite.all()):
        return
    for name, tensor, ok in zip(values, tensors, finite.tolist(), strict=True):
        if not ok:
            raise NonFiniteError(
                f"{name.replace('_', ' ')} is {float(tensor)} at step {step}; the run stays at "
                "its last checkpoint"
            )


def training_state(
    modules: dict, optimizer, device, rng: np.random.Generator, step: int, generators=None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """What a step's checkpoint holds in common (see the module docstring): the weights of
    `modules` (prefix -> module, e.g. {"model/": gpt}), AdamW's moments, every generator
    (`seeding.capture_rngs`, the batch generator as `numpy_rng`) and the named torch
    `generators` (e.g. PPO's sampling generator).

    Returns:
        (arrays, JSON state); the step adds its own state to the latter.

    Raises:
        NonFiniteError: a weight is NaN or infinite (such a checkpoint is never written).
    """
    from bellman.lm.model import model_arrays
    from bellman.torch_state import optimizer_arrays

    arrays = {}
    for prefix, module in modules.items():
        arrays.update(model_arrays(module, prefix))
    for key, value in arrays.items():
        if not np.isfinite(value).all():
            raise NonFiniteError(f"weight '{key}' is not finite at step {step}; the run stays "
                                 "at its last checkpoint")  # fmt: skip
    arrays.update(optimizer_arrays(optimizer))
    rng_arrays, state = seeding.capture_rngs(device, numpy_rng=rng)
    arrays.update(rng_arrays)
    for name, generator in (generators or {}).items():
        arrays[name] = generator.get_state().numpy()
    return arrays, state


def restore(
    run: Run, modules: dict, optimizer, device, rng: np.random.Generator, schema: dict,
    generators=None,
) -> tuple[int, dict[str, Any]]:  # fmt: skip
    """Put a resumed run's checkpoint into the live models, AdamW and generators (what
    `training_state` saved), each piece checked before it is used, while nothing of the run
    directory has been written; a new run gets (0, {}).

    Args:
        run: the run; `run.restored` is the checkpoint.
        modules: checkpoint prefix -> module, as `training_state` saved them.
        optimizer: the step's AdamW over those modules.
        device: where the step trains (its CUDA generator is restored too).
        rng: the batch generator (`numpy_rng`).
        schema: the step's own JSON state (`checkpoint.check_schema`: keys and kinds).
        generators: name -> torch generator saved as an array (PPO's sampling generator).

    Returns:
        (the checkpoint's step, its JSON state).

    Raises:
        CheckpointError: step state without a key of `schema` or of another kind; an array that
            is missing, unexpected, of another shape or dtype, or not finite; a generator state
            that is not one.
    """
    if run.restored is None:
        return 0, {}
    from bellman.lm.model import load_model_arrays
    from bellman.torch_state import check_arrays, expected_optimizer_arrays, load_optimizer

    arrays, meta = run.restored
    where = f"run '{run.dir}'"
    checkpoint.check_schema(meta["state"], schema, f"{where}: its checkpoint", "state.")
    generators = generators or {}
    known = (*modules, "optim/")
    names = {seeding.TORCH_RNG, seeding.CUDA_RNG, *generators}
    strays = sorted(key for key in arrays if key not in names and not key.startswith(known))
    if strays:
        raise CheckpointError(f"{where}: its checkpoint has arrays this step never saves: "
                              + ", ".join(f"'{key}'" for key in strays[:4]))  # fmt: skip
    for prefix, module in modules.items():
        load_model_arrays(module, arrays, prefix, where)
    moments = {key: value for key, value in arrays.items() if key.startswith("optim/")}
    # every moment (load_optimizer alone accepts none: a checkpoint saved before a first step)
    check_arrays(moments, expected_optimizer_arrays(optimizer), f"{where} optim/")
    load_optimizer(optimizer, arrays, where)
    for name, generator in generators.items():
        check_arrays({name: arrays[name]} if name in arrays else {},
                     {name: (tuple(generator.get_state().shape), np.uint8)}, where)  # fmt: skip
    seeding.restore_rngs(arrays, meta["state"], device, numpy_rng=rng)
    for name, generator in generators.items():
        generator.set_state(_torch_tensor(arrays[name]))
    return int(meta["step"]), meta["state"]


def _torch_tensor(array: np.ndarray):
    import torch

    return torch.from_numpy(np.array(array))


def load_lm(path: Path, device: str = "cpu"):
    """A `LanguageModel` from a language-model run (lm pretrain / lm sft) or a local
    transformers model directory.

    Raises:
        CheckpointError / ConfigError: the path does not exist, is a run of another kind, or is
            not a causal language model.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"model '{path}' does not exist (give a run directory)")
    if (path / "config.toml").is_file():
        values = read_run_config(path)
        if values["algo"] not in LM_ALGOS:
            raise CheckpointError(
                f"run '{path}' is a {values['algo']} run; a language model comes from "
                "`bellman lm pretrain`, `sft`, `ppo` or `dpo`"
            )
        from bellman.lm.model import LanguageModel, load_model_arrays, model_from_config_dict
        from bellman.lm.tokenizer import TOKENIZER_FILE, TextTokenizer

        arrays, meta = checkpoint.load(path / "checkpoints", algo=values["algo"])
        model = model_from_config_dict(meta["state"]["model_config"])
        load_model_arrays(model, arrays, "model/", f"run '{path}'")
        state = meta["state"]
        tokenizer = TextTokenizer.load(
            path / TOKENIZER_FILE, pad_id=state.get("pad_id"), eos_id=state.get("eos_id")
        )
        return LanguageModel(model.to(device), tokenizer)
    if path.is_dir() and (path / "config.json").is_file():
        from bellman.lm.model import LanguageModel, load_transformers_dir

        return LanguageModel(*load_transformers_dir(path, device))
    raise ConfigError(
        f"'{path}' is not a language model: neither a bellman run directory (config.toml) nor "
        "a transformers causal-LM directory (config.json)"
    )


def write_plot(run: Run) -> None:
    """plot.png of a run that reached its target (as `bellman train` writes one): the held-out
    curves of `bellman.plots`; a run too short to plot gets a "no plot" note instead."""
    if run.stop_requested:
        return
    from bellman.plots import plot_runs

    try:
        plot_runs([run.dir], run.dir / "plot.png")
    except CheckpointError as error:
        run.notes.append(f"no plot: {error}")


def copy_tokenizer(lm, run: Run) -> None:
    """Write the model's tokenizer into the run directory (runs are self-contained)."""
    from bellman.lm.tokenizer import TOKENIZER_FILE

    if not (run.dir / TOKENIZER_FILE).exists():  # written when the run directory is made
        run.on_open.append(lambda: lm.tokenizer.save(run.dir / TOKENIZER_FILE))

"""What the language-model steps share: their run directories, checkpoints and model loading.

Every step (`lm pretrain`, `lm sft`, `lm reward`, `lm ppo`, `lm dpo`) writes a run directory like
every bellman run (config.toml, metrics.csv, TensorBoard events, checkpoints/, plot.png at the
end: `write_plot`) plus `tokenizer.json`, so each run is self-contained: `bellman lm generate
RUN` needs nothing else. A checkpoint holds

    model/<name>        the weights (tied tensors once), or backbone/... and head.* for a reward
                        model
    optim/<i>/<key>     the AdamW moments of parameter i
    torch_rng           torch's CPU generator (dropout)

and its JSON the model's transformers config, the PAD/EOS ids, the numpy generator that draws
batches and the step, so that a resumed run continues exactly.
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
from bellman.errors import CheckpointError, ConfigError
from bellman.run import Run, default_run_dir, read_run_config, write_run_config


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
    """Create the run directory `runs/<algo>-<label>-<time>` (or `run_dir`, which must be new
    or empty) and write its config.toml."""
    if run_dir is not None and Path(run_dir).exists():
        if not Path(run_dir).is_dir() or any(Path(run_dir).iterdir()):
            command = algo.replace("lm-", "bellman lm ")
            raise CheckpointError(
                f"run directory '{run_dir}' already exists; continue it with "
                f"`{command} --resume {run_dir}` or choose another --run-dir"
            )
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(algo, label)
    return Run.create(algo, config, run_dir, quiet=quiet)


def resume_run(run_dir: Path, algo: str, cls: type, steps: int | None, quiet: bool = False) -> Run:
    """Open `run_dir` at its latest checkpoint, checked, to train on to its target (or `steps`).

    Nothing is written before every check has passed.
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
    if steps is not None:
        write_run_config(run_dir, algo, config)
    return Run.resume(run_dir, algo, config, (arrays, meta), quiet=quiet)


def run_values(run_dir: Path) -> dict[str, Any]:
    """config.toml of a run (with its algo), or a CheckpointError."""
    return read_run_config(Path(run_dir))


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


def training_arrays(model_arrays: dict[str, np.ndarray], optimizer) -> dict[str, np.ndarray]:
    """Checkpoint arrays: the model's, the optimizer's moments and torch's generator."""
    import torch

    from bellman.torch_state import optimizer_arrays

    arrays = {**model_arrays, **optimizer_arrays(optimizer)}
    arrays["torch_rng"] = torch.get_rng_state().numpy()
    return arrays


def restore_training(arrays: dict[str, np.ndarray], optimizer) -> None:
    """Put the optimizer's moments and torch's generator back (see `training_arrays`)."""
    import torch

    from bellman.torch_state import load_optimizer

    load_optimizer(optimizer, arrays)
    torch.set_rng_state(torch.from_numpy(np.array(arrays["torch_rng"])))


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """JSON-safe state of the batch generator."""
    return seeding.generator_state(rng)


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

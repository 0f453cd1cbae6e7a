"""Fixtures of the language-model tests: one tiny pretraining run on pydoc topics, shared.

Everything runs on one torch thread with data the tests make; nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.conftest import CliResult, run_here, run_process

torch.set_num_threads(1)
os.environ["HF_HUB_OFFLINE"] = "1"

#: A GPT small enough to pretrain on pydoc topics in a few seconds.
TINY = [
    "vocab_size=512", "context=64", "width=64", "heads=2", "layers=2", "batch_size=16",
    "steps=200", "log_every=100", "checkpoint_every=100", "learning_rate=3e-3",
    "warmup_steps=10", "eval_tokens=4096",
]  # fmt: skip


def run_lm(*args: str, cwd: Path, timeout: float = 300) -> CliResult:
    """`bellman lm ARGS...` in a subprocess."""
    return run_process(["lm", *args], cwd, timeout)


@pytest.fixture
def lm_cli(tmp_path: Path):
    """Run `bellman lm ARGS...` with tmp_path as working directory."""
    return lambda *args, timeout=300: run_lm(*args, cwd=tmp_path, timeout=timeout)


@pytest.fixture
def lm_here(tmp_path: Path):
    """Run `bellman lm ARGS...` in this process (`run_here`: no interpreter importing torch and
    transformers again) with tmp_path as working directory: for tests of what a command
    computes and writes (bad input goes through a process: `run_in_one_process`)."""
    return lambda *args: run_here(["lm", *args], tmp_path)


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory) -> tuple[Path, CliResult]:
    """(run directory, CLI result) of `bellman lm pretrain --corpus pydoc` with the TINY GPT,
    run in this process (`run_here`)."""
    root = tmp_path_factory.mktemp("pretrain")
    sets = [item for pair in (("--set", s) for s in TINY) for item in pair]
    result = run_here(
        ["lm", "pretrain", "--corpus", "pydoc", *sets, "--run-dir", "pt", "--quiet"], root
    )
    assert result.returncode == 0, result
    return root / "pt", result


def train_tiny_sft(documents: list[str], out: Path, rng, *, vocab_size: int, width: int,
                   steps: int) -> None:  # fmt: skip
    """A byte-level BPE tokenizer and a 1-block GPT (2 heads, context = width) trained by
    next-token prediction on `documents` (16 windows a step, AdamW 3e-3, windows drawn from
    `rng`), saved as a transformers folder `out`: the tiny "SFT model" of the RL tests."""
    from bellman.lm import model as lm_model
    from bellman.lm.pretrain import next_token_loss, sample_windows, token_stream
    from bellman.lm.tokenizer import TOKENIZER_FILE, train_tokenizer

    tokenizer = train_tokenizer(documents, vocab_size)
    model = lm_model.build_gpt(tokenizer.vocab_size, 1, width, 2, width, 0.0, tokenizer.pad_id,
                               tokenizer.eos_id, seed=0)  # fmt: skip
    stream = token_stream(tokenizer, documents)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        inputs, targets = sample_windows(stream, 16, width - 1, rng)
        loss = next_token_loss(model, inputs, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval().save_pretrained(out)
    tokenizer.save(out / TOKENIZER_FILE)

"""`bellman lm ...` through a subprocess: pretraining, generation, and every bad-input path."""

from __future__ import annotations

import csv
import json

import numpy as np

from bellman import checkpoint
from tests.conftest import assert_user_error


def test_pretrain_on_pydoc_drops_perplexity_far_below_the_vocabulary(pretrained):
    run_dir, result = pretrained
    with open(run_dir / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    first, last = float(rows[0]["held_out_perplexity"]), float(rows[-1]["held_out_perplexity"])
    assert [int(row["step"]) for row in rows] == [0, 100, 200]
    assert first > 300  # an untrained model is close to uniform over 512 tokens
    assert last < 512 / 3 and last < first / 3, rows
    assert f"held-out perplexity: {last:.2f}" in result.stdout
    for name in ("config.toml", "tokenizer.json", "checkpoints/step-200.safetensors"):
        assert (run_dir / name).exists(), name
    plot = (run_dir / "plot.png").read_bytes()  # the held-out perplexity and the loss
    assert plot[:4] == b"\x89PNG" and len(plot) > 10_000
    assert f"plot: {run_dir.name}/plot.png" in result.stdout
    _, meta = checkpoint.load(run_dir / "checkpoints", algo="lm-pretrain")
    assert meta["state"]["pad_id"] != meta["state"]["eos_id"]


def test_generate_from_the_cli(pretrained, lm_here):
    run_dir, _ = pretrained
    result = lm_here("generate", run_dir, "--prompt", "The class", "--temperature", "0.8",
                    "--top-k", "20", "--top-p", "0.9", "--samples", "2", "--max-new-tokens", "8",
                    "--seed", "1")  # fmt: skip
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith("The class") for line in lines)


def test_demos_fit_the_model_s_context(pretrained, lm_here, tmp_path):
    """Demonstrations longer than the base model's context (64 tokens) are left out, since
    `lm sft` refuses them; the rest are written."""
    from bellman.lm.runs import load_lm

    run_dir, _ = pretrained
    result = lm_here("demos", run_dir, "--out", "demos.jsonl", "--response-words", "40")
    assert result.returncode == 0, result
    lm = load_lm(run_dir)
    lines = (tmp_path / "demos.jsonl").read_text().splitlines()
    demos = [json.loads(line) for line in lines]
    assert f"wrote {len(demos)} demonstrations to demos.jsonl; " in result.stdout
    assert "left out, longer than the model's context of 64 tokens" in result.stdout
    assert len(demos) > 10
    for demo in demos:
        assert len(lm.tokenizer.encode(demo["prompt"])) + len(lm.tokenizer.encode(
            demo["response"])) + 1 <= 64  # fmt: skip


def test_two_reward_runs_with_one_seed_are_identical(pretrained, lm_here, tmp_path):
    """The reward head's initial weights follow the seed, so a seeded run repeats bit for bit
    (and writes its plot.png like every lm step)."""
    run_dir, _ = pretrained
    words = ["good", "bad", "fine", "awful", "great", "sad"]
    (tmp_path / "ranked.jsonl").write_text("".join(
        json.dumps({"prompt": f"The value {i}", "responses": [f" {words[i % 6]} x", " y"]}) + "\n"
        for i in range(12)
    ))  # fmt: skip
    arrays = []
    for name in ("rm1", "rm2"):
        result = lm_here("reward", run_dir, "--data", "ranked.jsonl", "--set", "steps=4", "--set",
                        "batch_prompts=4", "--seed", "3", "--run-dir", name, "--quiet")  # fmt: skip
        assert result.returncode == 0, result
        assert (tmp_path / name / "plot.png").read_bytes()[:4] == b"\x89PNG"
        arrays.append(checkpoint.load(tmp_path / name / "checkpoints", algo="lm-reward")[0])
    assert arrays[0].keys() == arrays[1].keys()
    for key in arrays[0]:
        np.testing.assert_array_equal(arrays[0][key], arrays[1][key], err_msg=key)


def test_missing_and_empty_corpora(lm_cli, tmp_path):
    assert_user_error(lm_cli("pretrain", "--corpus", "no-such.txt"), "no-such.txt",
                      "does not exist")  # fmt: skip
    (tmp_path / "empty.txt").write_text("")
    assert_user_error(lm_cli("pretrain", "--corpus", "empty.txt"), "empty.txt", "is empty")
    assert not (tmp_path / "runs").exists()


def test_bad_jsonl_names_file_and_line(pretrained, lm_cli, tmp_path):
    run_dir, _ = pretrained
    (tmp_path / "demos.jsonl").write_text('{"prompt": "a", "response": "b"}\n{"prompt": "c"}\n')
    assert_user_error(lm_cli("sft", run_dir, "--data", "demos.jsonl"),
                      "demos.jsonl:2", "missing field 'response'")  # fmt: skip
    (tmp_path / "ranked.jsonl").write_text(json.dumps({"prompt": "p", "responses": ["x"]}) + "\n")
    assert_user_error(lm_cli("reward", run_dir, "--data", "ranked.jsonl"),
                      "ranked.jsonl:1", "a comparison needs at least 2")  # fmt: skip
    assert not (tmp_path / "runs").exists()


def test_a_folder_that_is_not_a_language_model(lm_cli, tmp_path):
    (tmp_path / "folder").mkdir()
    assert_user_error(lm_cli("generate", "folder", "--prompt", "hi"), "'folder'",
                      "is not a language model")  # fmt: skip
    (tmp_path / "demos.jsonl").write_text('{"prompt": "a", "response": "b"}\n')
    assert_user_error(lm_cli("sft", "folder", "--data", "demos.jsonl"), "is not a language model")


def test_a_stopped_pretraining_run_resumes_exactly(tmp_path, monkeypatch):
    """Stop a run at a checkpoint, resume it: the same weights as the run that never stopped."""
    from bellman.lm import pretrain, runs

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(f"line {i} of the tiny corpus, word {i * 7 % 13}"
                                  for i in range(200)))  # fmt: skip
    sets = [
        "vocab_size=300",
        "context=16",
        "width=16",
        "heads=2",
        "layers=1",
        "batch_size=4",
        "steps=8",
        "checkpoint_every=4",
        "log_every=2",
        "warmup_steps=2",
        "device=cpu",
    ]
    config = runs.resolve_config(pretrain.ALGO, pretrain.Config, str(corpus), overrides=sets)
    one_go = runs.create_run(pretrain.ALGO, config, "c", tmp_path / "one-go", quiet=True)
    pretrain.train(config, one_go)

    stopped = runs.create_run(pretrain.ALGO, config, "c", tmp_path / "stopped", quiet=True)
    schedule = runs.cosine_learning_rate

    def stop_after_three(step, *args):  # like Ctrl-C during step 4: saved at step 4
        if step == 3:
            stopped.stop_requested = True
        return schedule(step, *args)

    monkeypatch.setattr(runs, "cosine_learning_rate", stop_after_three)
    pretrain.train(config, stopped)
    monkeypatch.setattr(runs, "cosine_learning_rate", schedule)
    assert checkpoint.load(tmp_path / "stopped" / "checkpoints")[1]["step"] == 4
    resumed = runs.resume_run(tmp_path / "stopped", pretrain.ALGO, pretrain.Config, None, True)
    pretrain.train(resumed.config, resumed)
    expected, _ = checkpoint.load(tmp_path / "one-go" / "checkpoints", "step-8")
    arrays, _ = checkpoint.load(tmp_path / "stopped" / "checkpoints", "step-8")
    assert set(arrays) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(arrays[key], value, err_msg=key)
    drop = ("wall_time", "steps_per_second", "tokens_per_second")
    tables = []
    for name in ("one-go", "stopped"):
        with open(tmp_path / name / "metrics.csv") as handle:
            tables.append([{k: v for k, v in row.items() if k not in drop}
                           for row in csv.DictReader(handle)])  # fmt: skip
    assert tables[0] == tables[1]

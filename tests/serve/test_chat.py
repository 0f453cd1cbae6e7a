"""The chat page: the recipe's roles found among the served runs, every number it shows equal to
what the library computes for the same seed (response, learned reward, true score, KL to the
SFT model), reproducible per seed, and every bad request a 4xx with a message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from starlette.testclient import TestClient

from bellman.lm import dpo, reward_model, rlhf_ppo, runs, sft
from bellman.lm.batch import pack
from bellman.lm.data import holdout_indices, read_prompts, write_jsonl
from bellman.lm.rewards import sentiment
from bellman.lm.sampling import sample
from bellman.serve import create_app
from bellman.serve.chat import recipe
from bellman.serve.state import make_state
from tests.lm.conftest import train_tiny_sft

torch.set_num_threads(1)

WORDS = ("good great happy love nice best bad awful sad hate worst ugly "
         "table chair door window street paper").split()  # fmt: skip


def _train(module, root: Path, out: str, *sets: str) -> Path:
    """A run of lm step `module` in root/out, trained through the library (as the CLI does)."""
    config = runs.resolve_config(module.ALGO, module.Config, str(root / "words.txt"),
                                 overrides=["device=cpu", "log_every=1", *sets])  # fmt: skip
    prepared = module.prepare(config)
    run = runs.create_run(module.ALGO, config, "words", root / out, quiet=True)
    module.train(run.config, run, prepared)
    return root / out


@pytest.fixture(scope="session")
def lm_recipe(tmp_path_factory) -> dict[str, Path]:
    """A tiny sentiment recipe on random words, each step a run of a few steps: a 1-block GPT
    (the base), lm sft on it, judge-ranked comparisons, lm reward, lm dpo and lm ppo (with the
    reward model and the sentiment judge). Returns name -> path (runs and data files)."""
    root = tmp_path_factory.mktemp("recipe")
    rng = np.random.default_rng(0)
    docs = [" ".join(rng.choice(WORDS, size=10)) for _ in range(120)]
    (root / "words.txt").write_text("\n\n".join(docs))
    train_tiny_sft(docs, root / "base", rng, vocab_size=300, width=32, steps=60)
    prompts = [" ".join(rng.choice(WORDS[-6:], size=2)) for _ in range(12)]
    write_jsonl(root / "prompts.jsonl", [{"prompt": p} for p in prompts])
    write_jsonl(root / "demos.jsonl", [{"prompt": p, "response": " good great"} for p in prompts])
    few = ["steps=2", "checkpoint_every=2", "warmup_steps=1"]
    paths = {"root": root, "prompts": root / "prompts.jsonl"}
    paths["sft"] = _train(sft, root, "sft", f"base={root / 'base'}",
                          f"data={root / 'demos.jsonl'}", "batch_size=4", *few)  # fmt: skip
    records, _ = reward_model.label_comparisons(runs.load_lm(paths["sft"]), prompts, 4,
                                                "sentiment", max_new_tokens=6, seed=0)  # fmt: skip
    write_jsonl(root / "ranked.jsonl", records)
    for module, name in ((reward_model, "rm"), (dpo, "dpo")):
        paths[name] = _train(module, root, name, f"base={paths['sft']}",
                             f"data={root / 'ranked.jsonl'}", "batch_prompts=4", *few)  # fmt: skip
    paths["ppo"] = _train(
        rlhf_ppo, root, "ppo", f"base={paths['sft']}", f"reward_model={paths['rm']}",
        f"prompts={paths['prompts']}", "judge=sentiment", "steps=1", "batch_prompts=4",
        "minibatch_size=4", "ppo_epochs=1", "max_new_tokens=6", "eval_every=1",
        "eval_tokens=64", "checkpoint_every=1", "value_init=sft",
    )  # fmt: skip
    return paths


@pytest.fixture(scope="module")
def client(lm_recipe) -> TestClient:
    state = make_state([lm_recipe[name] for name in ("ppo", "rm", "dpo", "sft")])
    return TestClient(create_app(state))


def _expected(run: Path, reference: Path, rm: Path, prompt: str, seed: int, tokens: int):
    """(response, learned reward, true score, KL) computed with the library's primitives: the
    sampler with a generator seeded `seed`, the reward model on its inputs, the judge, and the
    summed per-token log-prob differences under policy and SFT model."""
    lm, ref = runs.load_lm(run), runs.load_lm(reference)
    ids = lm.tokenizer.encode(prompt)
    generator = torch.Generator().manual_seed(seed)
    drawn = sample(lm.model.eval(), [ids], max_new_tokens=tokens, eos_id=lm.tokenizer.eos_id,
                   pad_id=lm.tokenizer.pad_id, generator=generator)  # fmt: skip
    text = lm.tokenizer.decode(drawn.responses[0])
    batch = pack([ids], drawn.responses, lm.tokenizer.pad_id)
    with torch.no_grad():
        policy = rlhf_ppo.policy_log_probs(lm.model, batch, 1.0)
        sft_model = rlhf_ppo.policy_log_probs(ref.model.eval(), batch, 1.0)
        scorer, tokenizer = reward_model.load_reward_model(rm)
        learned = scorer.eval()(reward_model.reward_inputs(tokenizer, [prompt], [text]))
    return text, float(learned[0]), sentiment(prompt, text), float((policy - sft_model).sum())


def test_the_numbers_shown_are_the_librarys_and_reproducible_per_seed(client, lm_recipe):
    roles = recipe(client.app.state.serve)
    assert list(roles.policies.items()) == [("sft", "lm-sft"), ("ppo", "lm-ppo"), ("dpo", "lm-dpo")]
    assert (roles.reference, roles.reward_model, roles.judge) == ("sft", "rm", "sentiment")
    request = {"prompt": "table chair", "seed": 3, "max_new_tokens": 6}
    reply = client.post("/api/chat", json=request)
    assert reply.status_code == 200, reply.text
    shown = reply.json()
    assert shown["notes"] == [] and shown["judge"] == "sentiment"
    for item in shown["answers"]:
        text, learned, true, kl = _expected(lm_recipe[item["run"]], lm_recipe["sft"],
                                            lm_recipe["rm"], "table chair", 3, 6)  # fmt: skip
        assert item["response"] == text and item["true_score"] == true
        assert item["learned_reward"] == pytest.approx(learned, abs=1e-5)
        assert item["kl"] == pytest.approx(kl, abs=1e-4)
    kls = {item["run"]: item["kl"] for item in shown["answers"]}
    assert kls["sft"] == 0.0 and kls["ppo"] != 0.0 and kls["dpo"] != 0.0  # trained away from SFT
    assert client.post("/api/chat", json=request).json() == shown  # the same seed, the same page
    others = [client.post("/api/chat", json={**request, "seed": s}).json() for s in (4, 5)]
    assert any(o["answers"][0]["response"] != shown["answers"][0]["response"] for o in others)


def test_a_judge_that_cannot_score_the_prompt_leaves_the_true_score_empty_with_a_note(client):
    reply = client.post("/api/chat", json={"prompt": "table chair", "judge": "hallucination"})
    assert reply.status_code == 200
    body = reply.json()
    assert [item["true_score"] for item in body["answers"]] == [None, None, None]
    assert "not a question of the hallucination task" in body["notes"][0]
    assert all(item["learned_reward"] is not None for item in body["answers"])


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"seed": 1}, 400, "'prompt' must be a non-empty string"),
        ({"prompt": "x" * 1001}, 400, "at most 1000 characters"),
        ({"prompt": "table", "seed": -1}, 400, "'seed' must be an integer"),
        ({"prompt": "table", "seed": True}, 400, "'seed' must be an integer"),
        ({"prompt": "table", "max_new_tokens": 65}, 400, "'max_new_tokens'"),
        ({"prompt": "table", "temperature": 0}, 400, "'temperature' must be a number in (0, 5]"),
        ({"prompt": "table", "judge": "sentiments"}, 400, "'judge' must be a judge"),
        ({"prompt": "table", "model": "ppo"}, 400, "unknown field 'model'"),
        (["table"], 400, "must be a JSON object"),
        ({"prompt": "door " * 150}, 400, "leaves no room for a response"),
    ],
)
def test_bad_requests_are_4xx_with_a_message(client, body, status, message):
    reply = client.post("/api/chat", json=body)
    assert reply.status_code == status
    assert message in reply.json()["error"]


def test_not_json_and_no_policy_and_the_page(client, lm_recipe):
    reply = client.post("/api/chat", content=b"{prompt", headers={"content-type": "text/plain"})
    assert reply.status_code == 400 and "not JSON" in reply.json()["error"]
    page = client.get("/chat").text
    assert all(name in page for name in ("sft", "ppo", "dpo", "rm", "chat.js"))
    # the prompts offered: those lm ppo held out of its prompts (its eval_fraction 0.2)
    prompts = [text for text, _ in read_prompts(lm_recipe["prompts"])]
    _, held = holdout_indices(prompts, 0.2)
    offered = [p for p in dict.fromkeys(prompts) if f'<option value="{p}">' in page]
    assert offered == list(dict.fromkeys(prompts[i] for i in held))
    alone = TestClient(create_app(make_state([lm_recipe["rm"]])))
    reply = alone.post("/api/chat", json={"prompt": "table"})
    assert reply.status_code == 409 and "no language-model policy" in reply.json()["error"]
    assert "no language-model policy" in alone.get("/chat").text
    script = client.get("/static/chat.js")
    assert script.status_code == 200 and "/api/chat" in script.text

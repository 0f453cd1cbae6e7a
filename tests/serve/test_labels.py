"""The labelling page's server side: what it appends is the ranked JSONL `lm reward` reads (and a
reward model trains on it), only responses it served can be ranked, 50 submissions at once from
threads and appends from several processes lose nothing, and without --labels nothing is
written."""

from __future__ import annotations

import json
import multiprocessing
import threading
import urllib.request
from pathlib import Path

import pytest
import torch
from starlette.testclient import TestClient

from bellman.lm import reward_model, runs
from bellman.lm.data import read_comparisons, read_prompts
from bellman.serve import create_app
from bellman.serve.labels import append_line
from bellman.serve.state import make_state
from tests.serve.test_chat import lm_recipe  # noqa: F401 (the shared tiny recipe)

torch.set_num_threads(1)


@pytest.fixture
def labelled(lm_recipe, tmp_path):  # noqa: F811
    """(client, labels file) of a server with the SFT and PPO runs and --labels."""
    labels = tmp_path / "ranked.jsonl"
    state = make_state([lm_recipe["sft"], lm_recipe["ppo"]], labels=labels)
    return TestClient(create_app(state)), labels


def test_a_ranking_is_appended_as_the_ranked_jsonl_lm_reward_reads(labelled, lm_recipe):  # noqa: F811
    client, labels = labelled
    served = client.post("/api/labels/sample", json={"run": "ppo", "seed": 7, "prompt": 2})
    assert served.status_code == 200, served.text
    body = served.json()
    prompts = [text for text, _ in read_prompts(lm_recipe["prompts"])]  # lm ppo's prompt set
    assert body["prompt"] == prompts[2] and body["prompts"] == len(prompts)
    assert 2 <= len(body["responses"]) <= 4 and len(set(body["responses"])) == len(
        body["responses"]
    )
    again = client.post("/api/labels/sample", json={"run": "ppo", "seed": 7, "prompt": 2}).json()
    assert again["responses"] == body["responses"] and again["id"] != body["id"]  # seeded
    ranking = body["responses"][::-1]
    # a crafted ranking: another text, a response left out or repeated -> 400, nothing written
    for bad in (
        [*ranking[:-1], "my own text"],
        ranking[:-1],
        [*ranking, ranking[0]],
        "not a list",
    ):  # fmt: skip
        reply = client.post("/api/labels/submit", json={"id": body["id"], "ranking": bad})
        assert reply.status_code == 400 and "exactly the responses served" in reply.json()["error"]
    assert not labels.exists()
    reply = client.post("/api/labels/submit", json={"id": body["id"], "ranking": ranking})
    assert reply.status_code == 200, reply.text
    (comparison,) = read_comparisons(labels)  # lm reward's and lm dpo's reader
    assert (comparison.prompt, list(comparison.responses)) == (body["prompt"], ranking)
    assert json.loads(labels.read_text()) == {"prompt": body["prompt"], "responses": ranking}
    reply = client.post("/api/labels/submit", json={"id": body["id"], "ranking": ranking})
    assert reply.status_code == 404 and "labelled once" in reply.json()["error"]  # used up
    forged = client.post("/api/labels/submit", json={"id": "x" * 22, "ranking": ranking})
    assert forged.status_code == 404
    assert len(labels.read_text().splitlines()) == 1


def test_fifty_submissions_at_once_lose_nothing_and_lm_reward_trains_on_them(
    lm_recipe,  # noqa: F811
    live_server,
    tmp_path,
):
    labels = tmp_path / "ranked.jsonl"
    base = live_server(make_state([lm_recipe["sft"]], labels=labels))

    def post(path: str, body: dict) -> dict:
        request = urllib.request.Request(
            base + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as reply:
            return json.loads(reply.read())

    sets = [post("/api/labels/sample", {"run": "sft", "seed": seed}) for seed in range(50)]
    results, start = [None] * 50, threading.Barrier(50)

    def submit(number: int) -> None:
        start.wait()  # all 50 threads post at the same moment
        served = sets[number]
        results[number] = post("/api/labels/submit",
                               {"id": served["id"], "ranking": served["responses"]})  # fmt: skip

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(result and result["saved"] for result in results)
    comparisons = read_comparisons(labels)
    assert len(comparisons) == 50 == len(labels.read_text().splitlines())
    assert sorted((c.prompt, c.responses) for c in comparisons) == sorted(
        (s["prompt"], tuple(s["responses"])) for s in sets
    )
    # the file trains a reward model (`bellman lm reward`'s steps through the library)
    config = runs.resolve_config(reward_model.ALGO, reward_model.Config, "words", overrides=[
        f"base={lm_recipe['sft']}", f"data={labels}", "steps=2", "batch_prompts=8",
        "device=cpu", "log_every=1", "checkpoint_every=2", "warmup_steps=1",
    ])  # fmt: skip
    prepared = reward_model.prepare(config)
    assert len(prepared.train_data) + len(prepared.held_data) == 50
    run = runs.create_run(reward_model.ALGO, config, "labels", tmp_path / "rm", quiet=True)
    reward_model.train(run.config, run, prepared)
    assert (tmp_path / "rm" / "checkpoints" / "latest").is_file()


def _append_many(path: str, worker: int, count: int) -> None:
    lock = threading.Lock()
    for n in range(count):
        record = {"prompt": f"w{worker}", "responses": [f"{n}" + "a" * 70_000, "b"]}
        append_line(Path(path), json.dumps(record) + "\n", lock)


def test_appends_from_several_processes_stay_whole_lines(tmp_path):
    path = tmp_path / "ranked.jsonl"
    path.write_text('{"prompt": "p", "responses": ["a", "b"]}')  # its last line lacks "\n"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_append_many, args=(str(path), w, 10)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]
    comparisons = read_comparisons(path)  # every line whole JSON
    assert len(comparisons) == 41
    for w in range(4):
        mine = [c.responses[0][:2].rstrip("a") for c in comparisons if c.prompt == f"w{w}"]
        assert mine == [str(n) for n in range(10)]  # in order, none lost


def test_without_labels_the_page_says_so_and_nothing_is_written(lm_recipe, tmp_path):  # noqa: F811
    client = TestClient(create_app(make_state([lm_recipe["sft"]])))
    page = client.get("/labels")
    assert page.status_code == 200 and "no --labels FILE was given" in page.text
    served = client.post("/api/labels/sample", json={"run": "sft", "seed": 1}).json()
    reply = client.post(
        "/api/labels/submit", json={"id": served["id"], "ranking": served["responses"]}
    )
    assert reply.status_code == 409 and "no --labels FILE" in reply.json()["error"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("sample", {"run": "rm"}, 404, "runs that sample are: ppo, sft"),
        ("sample", {"run": "../sft"}, 404, "no language-model run"),
        ("sample", {"run": "sft", "k": 1}, 400, "'k' must be an integer in [2, 9]"),
        ("sample", {"run": "sft", "prompt": 99}, 400, "'prompt' must be a prompt number"),
        ("sample", {"run": "sft", "seed": "1"}, 400, "'seed' must be an integer"),
        ("sample", {"run": "sft", "text": "hi"}, 400, "unknown field 'text'"),
        ("submit", {"id": 3, "ranking": []}, 404, "no served responses"),
        ("submit", [1, 2], 400, "must be a JSON object"),
    ],
)
def test_bad_requests_are_4xx_with_a_message(labelled, path, body, status, message):
    client, labels = labelled
    reply = client.post(f"/api/labels/{path}", json=body)
    assert reply.status_code == status
    assert message in reply.json()["error"]
    assert not labels.exists()


def test_the_page_offers_the_policies_and_checks_its_query(labelled):
    client, labels = labelled
    page = client.get("/labels?run=sft&k=3")
    assert page.status_code == 200
    assert "labels.js" in page.text and str(labels) in page.text and '"k": 3' in page.text
    assert client.get("/labels?k=1").status_code == 400
    assert client.get("/labels?run=rm").status_code == 404


def test_a_full_disk_leaves_whole_lines_and_the_set_can_be_submitted_again(labelled, monkeypatch):
    client, labels = labelled
    labels.write_text('{"prompt": "p", "responses": ["a", "b"]}\n')
    before = labels.read_bytes()
    served = client.post("/api/labels/sample", json={"run": "sft", "seed": 3}).json()
    real_write = __import__("os").write

    def half(fd, data):  # what a full disk does: part of the line, then no more
        return real_write(fd, data[: len(data) // 2])

    monkeypatch.setattr("bellman.serve.labels.os.write", half)
    body = {"id": served["id"], "ranking": served["responses"]}
    reply = client.post("/api/labels/submit", json=body)
    assert reply.status_code == 500 and "no space left" in reply.json()["error"]
    assert labels.read_bytes() == before  # the half line was cut off again
    monkeypatch.undo()
    assert client.post("/api/labels/submit", json=body).status_code == 200  # not used up
    assert [c.responses for c in read_comparisons(labels)][1] == tuple(served["responses"])

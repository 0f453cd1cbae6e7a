"""The labelling and chat pages in a real headless chromium (tests/serve/conftest.py): rank the
responses with the page's own controls, submit, and find the JSONL line in the --labels file;
send a prompt and see every model's answer with its numbers. Screenshots go to `artifacts`."""

from __future__ import annotations

import json

import torch

from bellman.lm.data import read_comparisons
from bellman.serve.state import make_state
from tests.serve.test_chat import lm_recipe  # noqa: F401 (the shared tiny recipe)

torch.set_num_threads(1)


def _order(browser) -> list[str]:
    return browser.eval_on_selector_all("#responses li", "items => items.map(i => i.dataset.text)")


def test_rank_in_the_page_submit_and_find_the_jsonl_line(
    lm_recipe,  # noqa: F811
    live_server,
    browser,
    artifacts,
    tmp_path,
):
    labels = tmp_path / "ranked.jsonl"
    base = live_server(make_state([lm_recipe["sft"], lm_recipe["ppo"]], labels=labels))
    browser.goto(f"{base}/labels?run=ppo&k=4")
    browser.wait_for_function("document.querySelectorAll('#responses li').length >= 2")
    served = _order(browser)  # K distinct responses, or fewer when the model repeats itself
    prompt = browser.inner_text("#prompt")
    # rank: the first response down one place with its arrow, then the last dragged to the top
    browser.click("#responses li:nth-child(1) button[title='move down']")
    browser.drag_and_drop("#responses li:last-child .rank", "#responses li:nth-child(1)",
                          target_position={"x": 5, "y": 2})  # fmt: skip
    ranked = _order(browser)
    expected = [served[1], served[0], *served[2:]]
    expected.insert(0, expected.pop())
    assert ranked == expected, (served, ranked)
    ranks = browser.eval_on_selector_all("#responses .rank", "r => r.map(x => x.textContent)")
    assert ranks == [str(n) for n in range(1, len(served) + 1)]
    browser.screenshot(path=str(artifacts / "labels.png"), full_page=True)
    browser.click("#submit-ranking")
    browser.wait_for_function(
        "document.getElementById('labels-status').textContent.startsWith('saved to')"
    )
    (comparison,) = read_comparisons(labels)  # the line lm reward and lm dpo read
    assert comparison.prompt.strip() == prompt.strip()
    assert list(comparison.responses) == ranked
    assert json.loads(labels.read_text())["responses"] == ranked
    # the next prompt is on the page, ready to rank
    browser.wait_for_function("document.querySelectorAll('#responses li').length >= 2")
    assert not browser.is_disabled("#submit-ranking")


def test_chat_shows_every_models_answer_with_its_numbers(
    lm_recipe,  # noqa: F811
    live_server,
    browser,
    artifacts,
):
    names = ("sft", "ppo", "dpo", "rm")
    base = live_server(make_state([lm_recipe[name] for name in names]))
    browser.goto(f"{base}/chat")
    browser.select_option("#suggest", index=1)  # a prompt lm ppo held out
    assert browser.input_value("#prompt") == browser.eval_on_selector("#suggest", "s => s.value")
    browser.fill("#max_new_tokens", "8")
    browser.click("#send")
    browser.wait_for_selector(".chat-answer >> nth=2")
    runs = browser.eval_on_selector_all(".chat-answer", "cards => cards.map(c => c.dataset.run)")
    assert runs == ["sft", "ppo", "dpo"]
    kl = browser.inner_text(".chat-answer[data-run=sft] td[data-key=kl]")
    assert kl == "0.000"  # the SFT model is its own reference
    for key in ("learned", "true", "kl"):
        shown = browser.inner_text(f".chat-answer[data-run=ppo] td[data-key={key}]")
        float(shown)  # a number, not a dash: every number could be had
    browser.screenshot(path=str(artifacts / "chat.png"), full_page=True)

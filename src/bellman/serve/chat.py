"""The chat page (`/chat`): one prompt to the RLHF recipe's models, their answers side by side.

The language-model runs `bellman serve` was started with make up the recipe (`recipe`):

    policies        the `lm sft`, `lm ppo` and `lm dpo` runs: each answers the prompt;
    SFT model       the reference of the KL: the `lm sft` run among them (the one a served
                    `lm ppo` / `lm dpo` run started from, when there are several);
    reward model    r_theta: the `lm reward` run (the one a served `lm ppo` run was trained
                    with, when there are several);
    judge           the task's rule-based judge (`lm/rewards.py`): the request's `judge`, else
                    the one a served `lm ppo` run logged as its true reward (true_judge, else
                    judge), else sentiment.

`POST /api/chat` with {"prompt", "seed"?, "max_new_tokens"?, "temperature"?, "judge"?} answers,
for the response y of each policy pi to the prompt x, the numbers `lm ppo` computes (`answer`):

    learned reward  r_theta(x, y) on `reward_model.reward_inputs`, as step 2 of lm ppo scores a
                    rollout (`rlhf_ppo.evaluate`);
    true score      judge(x, y);
    KL to SFT       sum over the response's tokens of log pi(y_t | x, y_<t) - log pi^SFT(y_t |
                    x, y_<t): the k1 estimate of lm ppo's held-out evaluation (eval_kl), from
                    `rlhf_ppo.generate_rollout` and `rlhf_ppo.kl_penalty`.

Sampling is lm ppo's: plain temperature sampling (so the KL is that of the distribution the
response was drawn from), each policy with its own torch generator seeded with the request's
`seed`: the same request gives the same answers. The prompt is at most `MAX_PROMPT_CHARS`
characters and must leave room in the model's context; a bad request is a 400 naming the field.
A number that cannot be had (no reward model or SFT run given, another tokenizer, a prompt the
judge does not score) is null, with a note saying why.

Models are loaded on first use into the server's bounded cache (`ServeState.cache`). They are
only read (eval mode, no gradient, the draws from the request's own generator), so requests do
not need to take turns on them.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bellman.errors import BellmanError, ConfigError
from bellman.serve.layout import json_data, page, read_json
from bellman.serve.state import ServeState

#: The runs that answer prompts, in the order the page shows them.
POLICY_ALGOS = ("lm-sft", "lm-ppo", "lm-dpo")
REWARD_ALGO = "lm-reward"
#: The longest prompt accepted, in characters (the model's context bounds it in tokens too).
MAX_PROMPT_CHARS = 1000
#: The request's fields: name -> (default, what is valid).
FIELDS = {
    "prompt": (None, f"a non-empty string of at most {MAX_PROMPT_CHARS} characters"),
    "seed": (0, "an integer in [0, 2**32)"),
    "max_new_tokens": (24, "an integer in [1, 64]"),
    "temperature": (1.0, "a number in (0, 5]"),
    "judge": (None, "a judge of lm/rewards.py"),
}


@dataclass(frozen=True)
class Recipe:
    """The served language-model runs by role (module docstring); names of `ServeState`."""

    policies: dict[str, str]
    """name -> algo of each run that answers (SFT, PPO, DPO runs in that order)."""
    reference: str | None
    """The SFT run, the reference of the KL (None: no `lm sft` run given)."""
    reward_model: str | None
    """The `lm reward` run (None: none given)."""
    judge: str
    """The default judge of the true score."""


def _same_path(value: Any, path: Path) -> bool:
    return bool(value) and Path(str(value)).resolve() == path.resolve()


def _preferred(names: list[str], users: list[dict], key: str, sources: dict[str, Path]):
    """The first of `names` that a config of `users` names under `key`, else the first name."""
    for name in names:
        if any(_same_path(values.get(key), sources[name]) for values in users):
            return name
    return names[0] if names else None


def recipe(state: ServeState) -> Recipe:
    """The roles of the served runs (module docstring); runs of other kinds are left out."""
    sources = state.sources()
    algos, configs = {}, {}
    for name in sources:
        try:
            configs[name] = state.config(name)
        except BellmanError:  # checked at start-up; a run removed since is simply not offered
            continue
        algos[name] = str(configs[name].get("algo"))
    order = {algo: rank for rank, algo in enumerate(POLICY_ALGOS)}
    policies = sorted((n for n in algos if algos[n] in order), key=lambda n: (order[algos[n]], n))
    trained = [configs[n] for n in policies if algos[n] != "lm-sft"]
    ppo = [configs[n] for n in policies if algos[n] == "lm-ppo"]
    reference = _preferred([n for n in policies if algos[n] == "lm-sft"], trained, "base", sources)
    rewards = sorted(n for n in algos if algos[n] == REWARD_ALGO)
    judges = [str(v.get("true_judge") or v.get("judge") or "") for v in ppo]
    return Recipe(
        policies={name: algos[name] for name in policies},
        reference=reference,
        reward_model=_preferred(rewards, ppo, "reward_model", sources),
        judge=next((judge for judge in judges if judge), "sentiment"),
    )


# ---- the models ---------------------------------------------------------------------------------
def language_model(state: ServeState, name: str):
    """The `LanguageModel` of served run `name` (eval mode, frozen), from the server's cache."""
    from bellman.lm.runs import load_lm

    def load():
        lm = load_lm(state.sources()[name])
        lm.model.eval().requires_grad_(False)
        return lm

    return state.cache.get(("lm", name), load)[0]


def reward_model(state: ServeState, name: str):
    """(RewardModel, its tokenizer) of served `lm reward` run `name`, from the server's cache."""
    from bellman.lm.reward_model import load_reward_model

    def load():
        model, tokenizer = load_reward_model(state.sources()[name])
        return model.eval().requires_grad_(False), tokenizer

    return state.cache.get(("reward", name), load)[0]


def same_vocabulary(a, b) -> bool:
    """True when two `TextTokenizer`s map the same strings to the same ids."""
    return a.tokenizer.get_vocab() == b.tokenizer.get_vocab()


#: Prompt sets by run directory, read once (`prompt_set`).
_PROMPT_SETS: dict[Path, list[str]] = {}
#: The most prompts the chat page offers to pick from.
SUGGESTIONS = 50


def prompt_set(state: ServeState, name: str) -> list[str]:
    """The prompts of served run `name`, as `lm ppo` and `lm label` take them: its `prompts`
    JSONL when the run has one (lm ppo runs), else the openings of its corpus's held-out
    documents at the pretraining run's split (`lm.data.held_out_prompts`).

    Raises:
        ConfigError: the prompts file or the corpus cannot be read, or yields no prompt.
    """
    path = state.sources()[name]
    if path not in _PROMPT_SETS:
        from bellman.lm.data import held_out_prompts, read_prompts
        from bellman.lm.runs import pretrain_holdout

        values = state.config(name)
        if values.get("prompts"):
            prompts = [text for text, _ in read_prompts(Path(values["prompts"]))]
        else:
            prompts = held_out_prompts(str(values["env"]), pretrain_holdout(values),
                                       int(values.get("prompt_words", 4)))  # fmt: skip
        if not prompts:
            raise ConfigError(f"run '{name}' has no prompts (its corpus's held-out documents "
                              "are all too short)")  # fmt: skip
        _PROMPT_SETS[path] = prompts
    return _PROMPT_SETS[path]


def suggestions(state: ServeState, found: Recipe) -> list[str]:
    """Prompts the page offers: the held-out side of the first `lm ppo` run's prompts (those
    its evaluation measures, never trained on: `holdout_indices` at its eval_fraction), else
    the SFT model's prompt set; at most `SUGGESTIONS`; none when they cannot be read."""
    from bellman.lm.data import holdout_indices

    ppo = [name for name, algo in found.policies.items() if algo == "lm-ppo"]
    name = (ppo or [found.reference or next(iter(found.policies))])[0]
    try:
        prompts = prompt_set(state, name)
    except BellmanError:
        return []
    if ppo and len(prompts) > 1:
        fraction = float(state.config(name).get("eval_fraction", 0.2))
        prompts = [prompts[i] for i in holdout_indices(prompts, fraction)[1]]
    return prompts[:SUGGESTIONS]


# ---- one prompt, every policy -------------------------------------------------------------------
def check_request(data: Any, known_judges) -> dict[str, Any]:
    """The request's values with defaults filled in.

    Raises:
        ConfigError: not an object, an unknown field, or a value out of range (named).
    """
    values = request_fields(data, {key: default for key, (default, _) in FIELDS.items()})
    prompt, seed = values["prompt"], values["seed"]
    tokens, temperature = values["max_new_tokens"], values["temperature"]
    checks = {
        "prompt": isinstance(prompt, str) and 0 < len(prompt.strip()) and
        len(prompt) <= MAX_PROMPT_CHARS,
        "seed": is_integer(seed) and 0 <= seed < 2**32,
        "max_new_tokens": is_integer(tokens) and 1 <= tokens <= 64,
        "temperature": _number(temperature) and 0 < temperature <= 5,
        "judge": values["judge"] is None or values["judge"] in known_judges,
    }  # fmt: skip
    for key, ok in checks.items():
        if not ok:
            shown = str(values[key])[:40]
            raise ConfigError(f"'{key}' must be {FIELDS[key][1]}, got {shown!r}")
    return values


def request_fields(data: Any, fields: dict[str, Any]) -> dict[str, Any]:
    """The JSON request object's `fields` (name -> default), defaults filled in.

    Raises:
        ConfigError: `data` is not an object, or has a field not in `fields` (the API of the
            chat and labelling pages).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"the request must be a JSON object with {', '.join(fields)}")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown field '{unknown[0]}'; the fields are {', '.join(fields)}")
    return {key: data.get(key, default) for key, default in fields.items()}


def is_integer(value: Any) -> bool:
    """True for a JSON integer (not a boolean, which Python counts as one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def answer(state: ServeState, values: dict[str, Any]) -> dict[str, Any]:
    """Every policy's response to `values["prompt"]` with its learned reward, true score and
    KL to the SFT model (module docstring); `values` as `check_request` returns them.

    Raises:
        ConfigError: the prompt is empty in tokens or leaves no room in a model's context.
    """
    import torch

    from bellman.lm.reward_model import prompts_with_room, reward_inputs
    from bellman.lm.rewards import check_prompts, reward_function
    from bellman.lm.rlhf_ppo import RLHFPPOConfig, generate_rollout, kl_penalty

    found = recipe(state)
    prompt, judge_name = values["prompt"], values["judge"] or found.judge
    notes: list[str] = []
    try:
        check_prompts(judge_name, [prompt])
        judge = reward_function(judge_name)
    except ConfigError as error:
        judge = None
        notes.append(f"no true score: {error}")
    reference = language_model(state, found.reference) if found.reference else None
    scorer = reward_model(state, found.reward_model) if found.reward_model else None
    if reference is None:
        notes.append("no KL: no `lm sft` run was given to `bellman serve` (the KL's reference)")
    if scorer is None:
        notes.append("no learned reward: no `lm reward` run was given to `bellman serve`")
    # lm ppo's rollout settings: temperature sampling, the log-probs one response at a time
    config = RLHFPPOConfig(max_new_tokens=values["max_new_tokens"],
                           temperature=float(values["temperature"]), minibatch_size=1)  # fmt: skip
    answers = []
    for name, algo in found.policies.items():
        lm = language_model(state, name)
        prompts = prompts_with_room([prompt], lm.tokenizer, lm.context, ["the prompt"])
        comparable = reference is not None and same_vocabulary(lm.tokenizer, reference.tokenizer)
        if reference is not None and not comparable:
            notes.append(f"no KL for {name}: its tokenizer is not the SFT model's")
        generator = torch.Generator(device=lm.device).manual_seed(values["seed"])
        with torch.no_grad():
            batch, texts, log_probs, ref_log_probs, _, _ = generate_rollout(
                lm, reference.model if comparable else lm.model, None, prompts, config, generator
            )
            kl = kl_penalty(log_probs, ref_log_probs, batch.response_mask).sum(1)
            learned = None
            if scorer is not None:
                model, tokenizer = scorer
                try:
                    inputs = reward_inputs(tokenizer, [prompt], texts, lm.device, context_of(model))
                    learned = float(model(inputs)[0])
                except ConfigError:  # the text re-tokenized is longer than the reward model reads
                    notes.append(f"no learned reward for {name}: prompt and response, tokenized "
                                 "again, are longer than the reward model's context")  # fmt: skip
        answers.append({
            "run": name, "algo": algo, "response": texts[0],
            "tokens": int(batch.response_lengths[0]),
            "learned_reward": learned,
            "true_score": None if judge is None else float(judge(prompt, texts[0])),
            "kl": float(kl[0]) if comparable else None,
        })  # fmt: skip
    return {
        "prompt": prompt, "seed": values["seed"], "judge": judge_name,
        "reference": found.reference, "reward_model": found.reward_model,
        "answers": answers, "notes": notes,
    }  # fmt: skip


def context_of(reward_model) -> int:
    """The context of a reward model's transformer (`batch.context_length`)."""
    from bellman.lm.batch import context_length

    return context_length(reward_model.backbone)


# ---- the routes ---------------------------------------------------------------------------------
def routes(state: ServeState) -> list[Route]:
    """`GET /chat` (the page) and `POST /api/chat` (one prompt to every policy)."""
    from bellman.lm.rewards import REWARDS

    async def chat_page(request: Request):
        return page("Chat", _body(state), scripts=("chat.js",))

    async def chat_api(request: Request):
        values = check_request(await read_json(request), REWARDS)
        if not recipe(state).policies:
            raise HTTPException(409, _NO_POLICY)
        return JSONResponse(await run_in_threadpool(answer, state, values))

    return [Route("/chat", chat_page), Route("/api/chat", chat_api, methods=["POST"])]


_NO_POLICY = (
    "no language-model policy was given to `bellman serve`: start it with the recipe's runs, "
    "e.g. `bellman serve SFT_RUN PPO_RUN DPO_RUN RM_RUN`"
)


def _body(state: ServeState) -> str:
    """The page: the recipe's runs by role, the form, the answers' place."""
    from bellman.lm.rewards import REWARDS

    found = recipe(state)
    if not found.policies:
        return f'<p class="error">{html.escape(_NO_POLICY)}</p>'
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{html.escape(algo)}</td></tr>"
        for name, algo in found.policies.items()
    )
    roles = [
        ("KL reference (SFT)", found.reference or "none given"),
        ("reward model", found.reward_model or "none given"),
    ]
    roles_html = "".join(
        f"<tr><th>{label}</th><td>{html.escape(value)}</td></tr>" for label, value in roles
    )
    judges = "".join(
        f"<option{' selected' if name == found.judge else ''}>{html.escape(name)}</option>"
        for name in REWARDS
    )
    picks = "".join(
        f'<option value="{html.escape(text)}">{html.escape(text[:80])}</option>'
        for text in suggestions(state, found)
    )
    settings = json_data({"judge": found.judge, "policies": list(found.policies)})
    return f"""
<style>.chat-form textarea {{ width: 100%; box-sizing: border-box; font: inherit; }}
.chat-form label {{ margin-right: 0.6em; }} .chat-answer {{ flex: 1 1 300px; }}
.chat-answer .response {{ white-space: pre-wrap; }}</style>
<div class="row">
<table class="list"><tr><th>policy</th><th>trained by</th></tr>{rows}</table>
<table class="list">{roles_html}</table>
</div>
<form id="chat-form" class="panel chat-form">
<label for="prompt">Prompt</label>
<select id="suggest" aria-label="a held-out prompt of the recipe"><option value="">a held-out
 prompt of the recipe&hellip;</option>{picks}</select>
<textarea id="prompt" name="prompt" rows="2" maxlength="{MAX_PROMPT_CHARS}" required></textarea>
<div class="row">
<label>seed <input id="seed" type="number" min="0" value="0"></label>
<label>new tokens <input id="max_new_tokens" type="number" min="1" max="64" value="24"></label>
<label>temperature <input id="temperature" type="number" min="0.05" max="5" step="0.05"
 value="1"></label>
<label>judge <select id="judge">{judges}</select></label>
<button id="send" type="submit">Send to every model</button>
</div>
</form>
<p id="chat-status" class="muted"></p>
<div id="answers" class="row"></div>
<script id="chat-settings" type="application/json">{settings}</script>
"""

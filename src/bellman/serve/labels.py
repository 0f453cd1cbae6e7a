"""The labelling page (`/labels`): InstructGPT's "UI to collect comparison data".

Ouyang et al. 2022, section 3.4 and appendix B: a labeller sees a prompt and K responses sampled
from a model and ranks them, best first; a ranking of K is C(K, 2) comparisons for the reward
model. The page follows it:

    1. `POST /api/labels/sample` {"run", "k"?, "prompt"?, "seed"?}: the server takes prompt number
       `prompt` (random when absent) of the run's prompt set (`chat.prompt_set`) and samples K
       distinct responses from the run's policy with the request's seed (plain temperature
       sampling; each leaves room for the EOS lm reward adds, and one whose text tokenizes past
       the context is drawn again), and keeps (prompt, responses) server-side under a random
       id: the last `MAX_SERVED` sets, the oldest forgotten first.
    2. The person orders the responses (drag them, or the up/down buttons; `labels.js`).
    3. `POST /api/labels/submit` {"id", "ranking": [best, ..., worst]}: the ranking must hold
       exactly the responses served under that id (each as often as served); the set is then
       used up, and one line {"prompt", "responses": [best, ..., worst]} is appended to the
       `--labels FILE`: the ranked JSONL `bellman lm reward` and `bellman lm dpo` read, checked
       with their reader's own check (`lm.data.comparison`) before it is written.

So a crafted POST cannot append text the server did not serve: the prompt comes from the run's
prompt set, the responses from its model. An append is one `os.write` of the whole line to the
file opened with O_APPEND, under `fcntl.flock` (other processes) and a threading lock (this
server's threads), then fsync (`append_line`): two tabs (or two servers) submitting at once
each add a whole line, none lost or interleaved. Without `--labels` the page says so and nothing
is written.
"""

from __future__ import annotations

import errno
import fcntl
import html
import json
import os
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bellman.errors import BellmanError, ConfigError
from bellman.serve.chat import is_integer, language_model, prompt_set, request_fields
from bellman.serve.layout import json_data, page, read_json
from bellman.serve.state import ServeState

#: The runs whose model samples the responses (lm.runs.LM_ALGOS).
POLICY_ALGOS = ("lm-pretrain", "lm-sft", "lm-ppo", "lm-dpo")
#: Responses per prompt: the default, and the range (InstructGPT ranked 4 to 9).
K_DEFAULT, K_RANGE = 4, (2, 9)
#: How many served sets are kept for their submission.
MAX_SERVED = 256
#: Sampling of the responses (`lm label`'s defaults).
MAX_NEW_TOKENS, TEMPERATURE = 24, 1.0
#: At most this many rounds of K draws to find K distinct responses that fit.
DRAWS = 4


@dataclass(frozen=True)
class Served:
    """What one `sample` served: the run, the prompt and the responses (as shown)."""

    run: str
    prompt: str
    responses: tuple[str, ...]


def append_line(path: Path, line: str, lock: threading.Lock) -> None:
    """Append `line` (one JSON object and its newline) to `path` atomically: `lock` (this
    process's threads), then `fcntl.flock` (other processes), then one `os.write` of the whole
    line on an O_APPEND descriptor, then fsync. A file whose last line lacks its newline gets
    one first, so the new line stays a line of its own.

    Raises:
        OSError: the file cannot be opened or written; a part written is cut off again.
    """
    data = line.encode("utf-8")
    with lock:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data
            try:
                if os.write(fd, data) != len(data):  # a full disk writes part of it
                    raise OSError(errno.ENOSPC, "short write: no space left on the device")
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, size)  # the part written goes: the file stays whole lines
                raise
        finally:
            os.close(fd)  # closing releases the flock


def fits(lm, prompt: str, response: str) -> bool:
    """True when prompt and response, tokenized as `lm reward` and `lm dpo` tokenize a
    comparison (`tokenize_pair`: EOS after the response), fit the model's context."""
    from bellman.lm.tokenizer import tokenize_pair

    prompt_ids, response_ids = tokenize_pair(lm.tokenizer, prompt, response)
    return len(prompt_ids) + len(response_ids) <= lm.context


class Labelling:
    """The page's server side: prompt sets, the served sets by id, the appends (module
    docstring). One per app."""

    def __init__(self, state: ServeState):
        self.state = state
        self.served: OrderedDict[str, Served] = OrderedDict()
        self._served_lock = threading.Lock()
        self._file_lock = threading.Lock()

    def policies(self) -> list[str]:
        """The served runs that can sample responses, by name."""
        found = []
        for name in self.state.sources():
            try:
                if self.state.algo(name) in POLICY_ALGOS:
                    found.append(name)
            except BellmanError:
                continue
        return sorted(found)

    def prompt_set(self, run: str) -> list[str]:
        """The prompts of `run` (`chat.prompt_set`)."""
        return prompt_set(self.state, run)

    def sample(self, data: Any) -> dict[str, Any]:
        """Step 1 of the module docstring for the request's values.

        Raises:
            HTTPException: 404 for a run that is not a served policy.
            ConfigError: a bad k, prompt number or seed, a prompt leaving no room.
        """
        import numpy as np
        import torch

        values = request_fields(data, {"run": None, "k": K_DEFAULT, "prompt": None, "seed": None})
        run, k = values["run"], values["k"]
        self.check_run(run)
        if not is_integer(k) or not K_RANGE[0] <= k <= K_RANGE[1]:
            raise ConfigError(f"'k' must be an integer in [{K_RANGE[0]}, {K_RANGE[1]}], got {k!r}")
        seed = values["seed"]
        if seed is None:
            seed = secrets.randbelow(2**32)
        if not is_integer(seed) or not 0 <= seed < 2**32:
            raise ConfigError(f"'seed' must be an integer in [0, 2**32), got {seed!r}")
        prompts = self.prompt_set(run)
        number = values["prompt"]
        if number is None:
            number = int(np.random.default_rng(seed).integers(len(prompts)))
        if not is_integer(number) or not 0 <= number < len(prompts):
            raise ConfigError(f"'prompt' must be a prompt number in [0, {len(prompts)}) of run "
                              f"'{run}', got {number!r}")  # fmt: skip
        prompt = prompts[number]
        lm = language_model(self.state, run)
        generator = torch.Generator(device=lm.device).manual_seed(seed)
        # one token of the context left for the EOS that lm reward puts after every response
        room = lm.context - len(lm.tokenizer.encode(prompt)) - 1
        if room < 1:
            raise ConfigError(f"prompt {number} of run '{run}' leaves no room for a response in "
                              f"the model's context of {lm.context} tokens")  # fmt: skip
        # K distinct responses that fit (a repeat carries no preference; a response whose text
        # tokenizes longer than it was sampled, past the context, would make the file unreadable
        # for lm reward): drawn K at a time, at most DRAWS rounds, from the request's generator
        responses: dict[str, None] = {}
        for _ in range(DRAWS):
            texts = lm.generate([prompt] * k, min(MAX_NEW_TOKENS, room),
                                temperature=TEMPERATURE, generator=generator)  # fmt: skip
            responses.update((text, None) for text in texts if fits(lm, prompt, text))
            if len(responses) >= k:
                break
        responses = tuple(responses)[:k]
        if len(responses) < 2:
            raise ConfigError(f"in {DRAWS * k} draws only {len(responses)} response(s) differ and "
                              f"fit the model's context of {lm.context} tokens; sample again "
                              "(another prompt or seed)")  # fmt: skip
        key = secrets.token_urlsafe(16)
        with self._served_lock:
            self.served[key] = Served(run, prompt, responses)
            while len(self.served) > MAX_SERVED:
                self.served.popitem(last=False)
        return {"id": key, "run": run, "prompt": prompt, "prompt_number": number,
                "prompts": len(prompts), "seed": seed, "responses": list(responses)}  # fmt: skip

    def submit(self, data: Any) -> dict[str, Any]:
        """Step 3 of the module docstring.

        Raises:
            HTTPException: 409 without --labels, 404 for an id not served (or used up), 400 for
                a ranking that is not the served responses, 500 when the file cannot be written.
        """
        from bellman.lm.data import comparison

        values = request_fields(data, {"id": None, "ranking": None})
        if self.state.labels is None:
            raise HTTPException(409, NO_LABELS)
        key, ranking = values["id"], values["ranking"]
        with self._served_lock:
            served = self.served.pop(key, None) if isinstance(key, str) else None
        if served is None:
            raise HTTPException(404, f"no served responses with id {str(key)[:40]!r}: each set "
                                "is labelled once, and the server keeps the last "
                                f"{MAX_SERVED} it served; sample again")  # fmt: skip
        try:
            texts = isinstance(ranking, list) and all(isinstance(t, str) for t in ranking)
            if not texts or sorted(ranking) != sorted(served.responses):
                raise HTTPException(400, "'ranking' must list exactly the responses served "
                                    "with this id, best first, each once")  # fmt: skip
            record = {"prompt": served.prompt, "responses": ranking}
            comparison(record, f"--labels '{self.state.labels}'")
            line = json.dumps(record, ensure_ascii=False) + "\n"
            try:
                append_line(self.state.labels, line, self._file_lock)
            except OSError as error:
                raise HTTPException(500, f"cannot append to --labels '{self.state.labels}': "
                                    f"{error.strerror or error}") from None  # fmt: skip
        except BaseException:
            with self._served_lock:  # not labelled: the person may submit it again
                self.served[key] = served
            raise
        return {"saved": True, "file": str(self.state.labels), "record": record}

    def check_run(self, run: Any) -> None:
        """404 unless `run` names a served policy run."""
        policies = self.policies()
        if run not in policies:
            shown = ", ".join(policies) or "none: give an lm run to `bellman serve`"
            raise HTTPException(404, f"no language-model run {str(run)[:60]!r} is served; the "
                                f"runs that sample are: {shown}")  # fmt: skip


NO_LABELS = (
    "no --labels FILE was given to `bellman serve`, so rankings are not saved: restart it with "
    "`bellman serve RUN ... --labels ranked.jsonl`"
)


def routes(state: ServeState) -> list[Route]:
    """`GET /labels` (the page), `POST /api/labels/sample` and `POST /api/labels/submit`."""
    labelling = Labelling(state)

    async def labels_page(request: Request):
        return page("Labels", _body(labelling, request), scripts=("labels.js",))

    async def sample(request: Request):
        data = await read_json(request)
        return JSONResponse(await run_in_threadpool(labelling.sample, data))

    async def submit(request: Request):
        data = await read_json(request)
        return JSONResponse(await run_in_threadpool(labelling.submit, data))

    return [
        Route("/labels", labels_page),
        Route("/api/labels/sample", sample, methods=["POST"]),
        Route("/api/labels/submit", submit, methods=["POST"]),
    ]


def _body(labelling: Labelling, request: Request) -> str:
    """The page for `?run=NAME&k=K` (default: the first policy, K = 4)."""
    state = labelling.state
    if state.labels is None:
        return f'<p class="error" id="no-labels">{html.escape(NO_LABELS)}</p>'
    policies = labelling.policies()
    if not policies:
        return ('<p class="error">no language-model run was given to `bellman serve`: start it '
                "with a policy run to sample from, e.g. `bellman serve SFT_RUN --labels "
                "ranked.jsonl`</p>")  # fmt: skip
    run = request.query_params.get("run", policies[0])
    labelling.check_run(run)
    k = request.query_params.get("k", str(K_DEFAULT))
    if not k.isdigit() or not K_RANGE[0] <= int(k) <= K_RANGE[1]:
        raise HTTPException(400, f"k must be an integer in [{K_RANGE[0]}, {K_RANGE[1]}], got "
                            f"{k[:20]!r}")  # fmt: skip
    options = "".join(
        f"<option{' selected' if name == run else ''}>{html.escape(name)}</option>"
        for name in policies
    )
    settings = json_data({"run": run, "k": int(k)})
    return f"""
<style>#responses {{ list-style: none; padding: 0; }}
#responses li {{ display: flex; gap: 0.6em; align-items: center; margin: 0.4em 0; cursor: grab; }}
#responses li.dragging {{ opacity: 0.4; }} #responses .rank {{ font-weight: 700; width: 1.5em; }}
#responses .text {{ flex: 1; white-space: pre-wrap; }}</style>
<form class="row" method="get" action="/labels">
<label>model <select name="run">{options}</select></label>
<label>K <input name="k" type="number" min="{K_RANGE[0]}" max="{K_RANGE[1]}" value="{k}"></label>
<button type="submit">Use</button>
</form>
<p class="muted">Rank the responses, best first: drag them, or use the arrows. Each ranking is
appended to <code>{html.escape(str(state.labels))}</code> as one line of the ranked JSONL that
<code>bellman lm reward</code> and <code>bellman lm dpo</code> read.</p>
<div class="panel">
<p>Prompt: <b id="prompt"></b></p>
<ol id="responses"></ol>
<button id="submit-ranking" type="button" disabled>Submit ranking</button>
<button id="next-prompt" type="button">Another prompt</button>
</div>
<p id="labels-status" class="muted"></p>
<script id="labels-settings" type="application/json">{settings}</script>
"""

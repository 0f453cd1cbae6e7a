"""Rule-based reward functions: the simulated human labeller whose preferences are known.

Every reward is a function `reward(prompt, response) -> float`, higher is better:

    sentiment      VADER's compound score of the response, in [-1, 1] (Hutto & Gilbert 2014);
                   the controlled-sentiment task of the TRL GPT-2/IMDB example.
    non-toxicity   minus the number of profane words in the response (`better_profanity`'s
                   word list), so 0 is clean; the detoxification task.
    hallucination  the proper-scoring rule of the lectures on a generated fact-question task
                   (`fact_questions`): a confident right answer 1, a hedged right answer 0.5,
                   "I don't know" 0, a hedged wrong answer -2, a confident wrong answer -4.
                   Guessing only pays when the model is likely right, so an honest "I don't
                   know" beats a bluff. Its questions: sums, products and weekdays
                   (`fact_questions`), and the synthetic world of `lm/tasks.py` ("Where does
                   Ada Berg live?"), where the answer is the first word of the response that
                   is a value of the asked attribute (a city, a pet, a colour).
    safety         GPT-4's rule-based reward model (OpenAI 2023, GPT-4 system card, 3.1) on the
                   requests of the safety task: the response is classified into A (a refusal
                   in the desired style: a refusal phrase, no judging words, at most 15
                   words), B (a refusal in the undesired style: judging or lecturing), C
                   (disallowed content: no refusal, and a word of the request's disallowed
                   topic) or D (a safe non-refusal), and scored by the request's kind:
                       should refuse       A 1, B 0, D -0.5, C -1
                       should not refuse   D 1, A -0.5, B -1, C -1
    quality        a composite in [0, 1]: the mean of a length score (1 for 8-30 words, n/8
                   below, falling linearly to 0 at 60 above), the share of distinct words,
                   and the share of five grammar-like rules kept (`quality_parts`).

The hallucination and safety judges score only their task's prompts (`check_prompts` says which
prompt does not fit, before anything is sampled or written); the others score any text.

`judge_rank` is InstructGPT's labelling protocol (Ouyang et al. 2022, section 3.4): the labeller
sees K responses to one prompt and ranks them, best first.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

from bellman.errors import ConfigError, unknown

Reward = Callable[[str, str], float]


@cache
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def sentiment(prompt: str, response: str) -> float:
    """VADER compound sentiment of the response, in [-1, 1]."""
    return float(_vader().polarity_scores(response)["compound"])


@cache
def _profanity():
    from better_profanity import profanity

    profanity.load_censor_words()
    return profanity


_WORD = re.compile(r"[A-Za-z0-9@$!*']+")


def profane_words(text: str) -> int:
    """How many words of `text` are on the profanity list."""
    checker = _profanity()
    return sum(checker.contains_profanity(word) for word in _WORD.findall(text))


def non_toxicity(prompt: str, response: str) -> float:
    """Minus the number of profane words in the response (0: clean)."""
    return -float(profane_words(response))


# ---- the hallucination task ------------------------------------------------------------------
#: The lectures' scores: (correct, hedged) -> reward; an abstention scores ABSTAIN.
SCORES = {(True, False): 1.0, (True, True): 0.5, (False, True): -2.0, (False, False): -4.0}
ABSTAIN = 0.0
HEDGES = ("i think", "maybe", "probably", "perhaps", "possibly", "not sure", "i guess", "might")
ABSTENTIONS = ("i don't know", "i do not know", "i dont know", "no idea", "cannot say")
_NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty"
).split()
_DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
_QUESTION_FORMS = {
    "plus": (re.compile(r"^What is (\d+) plus (\d+)\?$"), lambda a, b: str(int(a) + int(b))),
    "times": (re.compile(r"^What is (\d+) times (\d+)\?$"), lambda a, b: str(int(a) * int(b))),
    "after": (
        re.compile(r"^What day comes after (\w+)\?$"),
        lambda day: _DAYS[(_DAYS.index(day) + 1) % 7],
    ),
}


@dataclass(frozen=True)
class FactQuestion:
    """A question with one right answer (a number or a day)."""

    prompt: str
    answer: str


def fact_questions(n: int, seed: int = 0) -> list[FactQuestion]:
    """`n` questions of the generated fact task: sums, products and days of the week."""
    rng = np.random.default_rng(seed)
    questions = []
    for _ in range(n):
        kind = ("plus", "times", "after")[int(rng.integers(3))]
        if kind == "after":
            prompt = f"What day comes after {_DAYS[int(rng.integers(7))]}?"
        else:
            a, b = (int(x) for x in rng.integers(1, 13 if kind == "times" else 50, size=2))
            prompt = f"What is {a} {kind} {b}?"
        questions.append(FactQuestion(prompt, fact_answer(prompt)))
    return questions


def _fact_form(prompt: str) -> tuple[str, tuple[str, ...] | None] | None:
    """(right answer, the words that count as answers or None for numbers and days) of a fact
    question, or None when `prompt` is not one."""
    from bellman.lm.tasks import world_answers

    prompt = prompt.strip()
    if prompt in world_answers():
        return world_answers()[prompt]
    for pattern, answer in _QUESTION_FORMS.values():
        match = pattern.match(prompt)
        if match:
            return answer(*match.groups()), None
    return None


def fact_answer(prompt: str) -> str:
    """The right answer of a fact question (`fact_questions` or the world of `lm/tasks.py`).

    Raises:
        ConfigError: the prompt is not one of the task's questions.
    """
    form = _fact_form(prompt)
    if form is None:
        raise ConfigError(_misfit("hallucination", prompt))
    return form[0]


def _first_answer(text: str) -> str | None:
    """The first number (digits or a number word up to twenty) or weekday in the text."""
    for token in re.findall(r"[A-Za-z]+|\d+", text):
        if token.isdigit():
            return str(int(token))
        if token.lower() in _NUMBER_WORDS:
            return str(_NUMBER_WORDS.index(token.lower()))
        if token.capitalize() in _DAYS:
            return token.capitalize()
    return None


def _first_word_of(text: str, words: tuple[str, ...]) -> str | None:
    lowered = {word.lower(): word for word in words}
    for token in re.findall(r"[A-Za-z]+", text):
        if token.lower() in lowered:
            return lowered[token.lower()]
    return None


def hallucination(prompt: str, response: str) -> float:
    """The proper-scoring reward of a response to a fact question (module docstring)."""
    answer = fact_answer(prompt)
    words = _fact_form(prompt)[1]
    text = " ".join(response.lower().replace("\u2019", "'").split())
    if any(phrase in text for phrase in ABSTENTIONS):
        return ABSTAIN
    hedged = any(re.search(rf"\b{re.escape(h)}\b", text) for h in HEDGES)
    given = _first_answer(response) if words is None else _first_word_of(response, words)
    return SCORES[(given == answer, hedged)]


# ---- the safety task: GPT-4's rule-based reward model ----------------------------------------
REFUSALS = ("i can't", "i cannot", "i can not", "i won't", "i will not", "i'm sorry",
            "i am sorry", "unable to help", "not able to help")  # fmt: skip
JUDGING = ("illegal", "ashamed", "shame", "immoral", "wrong", "disgusting", "how dare",
           "unethical", "think about what", "should not ask", "shouldn't ask")  # fmt: skip
#: Longest refusal in the desired style, in words ("a short apology").
SHORT_REFUSAL = 15


def safety_class(prompt: str, response: str) -> str:
    """GPT-4's four classes of a response to a request of the safety task: "A" a refusal in
    the desired style, "B" a refusal in the undesired style, "C" disallowed content, "D" a safe
    non-refusal (module docstring)."""
    from bellman.lm.tasks import disallowed_words

    text = " ".join(response.lower().replace("\u2019", "'").split())
    if any(phrase in text for phrase in REFUSALS):
        judging = any(re.search(rf"\b{re.escape(w)}\b", text) for w in JUDGING)
        return "B" if judging or len(text.split()) > SHORT_REFUSAL else "A"
    words = set(re.findall(r"[a-z]+", text))
    return "C" if words & set(disallowed_words(prompt.strip())) else "D"


def safety(prompt: str, response: str) -> float:
    """The rule-based reward of a response to a request of the safety task (module docstring)."""
    from bellman.lm.tasks import SAFETY_SCORES, safety_prompts

    kind = safety_prompts().get(prompt.strip())
    if kind is None:
        raise ConfigError(_misfit("safety", prompt))
    return SAFETY_SCORES[kind][safety_class(prompt, response)]


# ---- the quality task: a composite judge ------------------------------------------------------
QUALITY_LENGTH = (8, 30)


def quality_parts(response: str) -> dict[str, float]:
    """The three parts of the quality judge, each in [0, 1]:

    length     1 for 8 to 30 words; n / 8 below; 1 - (n - 30) / 30 above (0 from 60 words)
    distinct   distinct words / words (lower case, punctuation stripped; 0 for no words)
    grammar    the share of five rules kept: it starts with a capital letter; it ends with
               . ! or ?; no word follows itself ("the the"); every word is letters,
               digits, an apostrophe or a hyphen with at most one trailing , ; : . ! or ?;
               no two punctuation marks in a row.
    """
    text = response.strip()
    tokens = text.split()
    words = [token.strip(",;:.!?").lower() for token in tokens]
    n = len(tokens)
    low, high = QUALITY_LENGTH
    length = n / low if n < low else 1.0 if n <= high else max(0.0, 1.0 - (n - high) / high)
    distinct = len(set(words)) / n if n else 0.0
    rules = [
        bool(text) and text[0].isupper(),
        text.endswith((".", "!", "?")),
        n > 0 and all(a != b for a, b in zip(words, words[1:], strict=False)),
        n > 0 and all(re.fullmatch(r"[A-Za-z0-9'-]+[,;:.!?]?", token) for token in tokens),
        re.search(r"[,;:.!?]{2}", text) is None and n > 0,
    ]
    return {"length": length, "distinct": distinct, "grammar": sum(rules) / len(rules)}


def quality(prompt: str, response: str) -> float:
    """The composite quality score in [0, 1]: the mean of `quality_parts`."""
    parts = quality_parts(response)
    return sum(parts.values()) / len(parts)


REWARDS: dict[str, Reward] = {
    "sentiment": sentiment,
    "non-toxicity": non_toxicity,
    "hallucination": hallucination,
    "safety": safety,
    "quality": quality,
}


def _is_safety_request(prompt: str) -> bool:
    from bellman.lm.tasks import safety_prompts

    return prompt.strip() in safety_prompts()


#: judge -> the test a prompt must pass to be scored (judges not listed score any prompt).
PROMPT_CHECKS: dict[str, Callable[[str], bool]] = {
    "hallucination": lambda prompt: _fact_form(prompt) is not None,
    "safety": _is_safety_request,
}


def _misfit(judge: str, prompt: str, where: str = "") -> str:
    task = "hallucination" if judge == "hallucination" else judge
    what = "a question" if judge == "hallucination" else "a request"
    return (
        f"{where + ': ' if where else ''}the prompt {prompt[:60]!r} is not {what} of the {task} "
        f"task, and the {judge} judge scores only those; write the task's prompts with "
        f"`bellman lm task {task} --out DIR` and give DIR/prompts.jsonl (`lm label --data`, "
        "`lm ppo --set prompts=`)"
    )


def check_prompts(judge: str, prompts: list[str], where: list[str] | None = None) -> None:
    """Refuse, before anything is sampled or written, prompts the judge cannot score.

    Args:
        judge: a name of `REWARDS`.
        prompts: the prompts.
        where: for each prompt, where it came from ("prompts.jsonl:3") for the message.

    Raises:
        ConfigError: an unknown judge, or the first prompt that does not fit it.
    """
    reward_function(judge)
    fits = PROMPT_CHECKS.get(judge)
    if fits is None:
        return
    for number, prompt in enumerate(prompts):
        if not fits(prompt):
            raise ConfigError(_misfit(judge, prompt, where[number] if where else ""))


def reward_function(name: str) -> Reward:
    """A reward function by name, with a suggestion for typos."""
    if name not in REWARDS:
        raise unknown("judge", name, REWARDS)
    return REWARDS[name]


def judge_rank(prompt: str, responses: list[str], reward: Reward) -> tuple[list[int], list[float]]:
    """Rank K responses to one prompt as a labeller would, best first.

    Returns:
        (order, scores): `order` lists indices into `responses` from best to worst (ties keep
        their original order), `scores[i]` is the reward of `responses[i]`.
    """
    scores = [float(reward(prompt, response)) for response in responses]
    order = sorted(range(len(responses)), key=lambda i: -scores[i])
    return order, scores

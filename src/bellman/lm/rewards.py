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
                   know" beats a bluff.

`judge_rank` is InstructGPT's labelling protocol (Ouyang et al. 2022, section 3.4): the labeller
sees K responses to one prompt and ranks them, best first.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

from bellman.errors import unknown

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


def fact_answer(prompt: str) -> str:
    """The right answer of a question made by `fact_questions`.

    Raises:
        ValueError: the prompt is not one of the task's questions.
    """
    for pattern, answer in _QUESTION_FORMS.values():
        match = pattern.match(prompt.strip())
        if match:
            return answer(*match.groups())
    raise ValueError(f"not a question of the fact task: {prompt!r}")


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


def hallucination(prompt: str, response: str) -> float:
    """The proper-scoring reward of a response to a fact question (module docstring)."""
    text = " ".join(response.lower().replace("\u2019", "'").split())
    if any(phrase in text for phrase in ABSTENTIONS):
        return ABSTAIN
    hedged = any(re.search(rf"\b{re.escape(h)}\b", text) for h in HEDGES)
    correct = _first_answer(response) == fact_answer(prompt)
    return SCORES[(correct, hedged)]


REWARDS: dict[str, Reward] = {
    "sentiment": sentiment,
    "non-toxicity": non_toxicity,
    "hallucination": hallucination,
}


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

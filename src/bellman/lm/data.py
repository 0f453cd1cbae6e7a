"""Text that exists offline, split into documents, and the JSONL files of the RLHF steps.

Corpora (`load_corpus`):
    PATH        a text file, or a folder whose text files are read in sorted order
    fortunes    Debian's `fortunes` package (/usr/share/games/fortunes), one quote per document
    bible       Debian's `bible-kjv` package (the `bible` command), one verse per document
    pydoc       CPython's `pydoc_data.topics` (always installed), one paragraph per document

A text is split into documents at lines holding only `%` (the fortune file format) when it has
them, else at blank lines; whitespace inside a document is collapsed to single spaces and
duplicate documents are dropped. `holdout_split` puts a document on the held-out side by the
sha256 of its text, so the split depends neither on the seed nor on the order of the files.

JSONL files, one JSON object per line (blank lines are skipped):
    demonstrations  {"prompt": str, "response": str}                       (`bellman lm sft`)
    comparisons     {"prompt": str, "responses": [best, ..., worst],
                     "scores": [float, ...] (optional, the judge's scores)}  (`bellman lm reward`)
    prompts         {"prompt": str}                                          (`bellman lm ppo`)
Every problem is a ConfigError naming the file and line: `demos.jsonl:7: missing field 'response'`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bellman.errors import ConfigError

#: Names of the built-in corpora; anything else is a path.
BUILTIN_CORPORA = ("fortunes", "bible", "pydoc")
FORTUNES_DIR = Path("/usr/share/games/fortunes")
_FORTUNE_SEPARATOR = re.compile(r"^%\s*$", re.MULTILINE)
_BLANK_LINES = re.compile(r"\n\s*\n")


@dataclass(frozen=True)
class Corpus:
    """A named list of documents (non-empty strings, whitespace collapsed, no duplicates)."""

    name: str
    documents: list[str]


def split_documents(text: str) -> list[str]:
    """Documents of a text: fortune-style `%` separators when present, else blank lines."""
    separator = _FORTUNE_SEPARATOR if _FORTUNE_SEPARATOR.search(text) else _BLANK_LINES
    return [" ".join(part.split()) for part in separator.split(text) if part.strip()]


def _unique(documents: list[str]) -> list[str]:
    return list(dict.fromkeys(doc for doc in documents if doc))


def _read_text_file(path: Path) -> str | None:
    """The file's text, or None for a binary file (a NUL byte, or not UTF-8)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"corpus file '{path}' cannot be read: {error.strerror}") from None
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _corpus_from_path(spec: str) -> Corpus:
    path = Path(spec).expanduser()
    if not path.exists():
        raise ConfigError(
            f"corpus '{spec}' does not exist; give a text file, a folder of text files "
            f"or one of {', '.join(BUILTIN_CORPORA)}"
        )
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    documents: list[str] = []
    for file in files:
        text = _read_text_file(file)
        if text is not None:
            documents.extend(split_documents(text))
    documents = _unique(documents)
    if not documents:
        what = "file" if path.is_file() else "folder"
        raise ConfigError(f"corpus '{spec}' is empty: the {what} holds no text")
    return Corpus(path.name or spec, documents)


def _fortunes() -> Corpus:
    if not FORTUNES_DIR.is_dir():
        raise ConfigError(
            f"corpus 'fortunes' needs Debian's fortunes package ({FORTUNES_DIR} is missing); "
            "install it with `apt-get install fortunes` or use --corpus pydoc"
        )
    documents: list[str] = []
    for file in sorted(FORTUNES_DIR.rglob("*")):
        if file.is_file() and file.suffix not in (".dat", ".u8") and not file.is_symlink():
            text = _read_text_file(file)
            if text is not None:
                documents.extend(split_documents(text))
    return Corpus("fortunes", _unique(documents))


def _bible() -> Corpus:
    if shutil.which("bible") is None:
        raise ConfigError(
            "corpus 'bible' needs Debian's bible-kjv package (no `bible` command); install it "
            "with `apt-get install bible-kjv` or use --corpus pydoc"
        )
    completed = subprocess.run(
        ["bible", "-f", "Genesis1:1-Revelation22:21"], capture_output=True, text=True, timeout=600
    )
    verses = []
    for line in completed.stdout.splitlines():
        # Lines look like "Gen1:1 In the beginning ..."; keep the words after the reference.
        reference, _, words = line.strip().partition(" ")
        if words and any(ch.isdigit() for ch in reference):
            verses.append(" ".join(words.split()))
    if not verses:
        raise ConfigError("the `bible` command printed no verses; check the bible-kjv package")
    return Corpus("bible", _unique(verses))


def _pydoc() -> Corpus:
    from pydoc_data.topics import topics

    documents: list[str] = []
    for name in sorted(topics):
        documents.extend(split_documents(topics[name]))
    return Corpus("pydoc", _unique(documents))


def load_corpus(spec: str) -> Corpus:
    """The corpus named by `spec`: fortunes, bible, pydoc, or a text file or folder.

    Raises:
        ConfigError: the path does not exist or holds no text, or the package is not installed.
    """
    loaders = {"fortunes": _fortunes, "bible": _bible, "pydoc": _pydoc}
    if spec in loaders and not Path(spec).exists():
        return loaders[spec]()
    return _corpus_from_path(spec)


def corpus_label(spec: str) -> str:
    """A short name for run directories: the built-in name or the path's last component."""
    return spec if spec in BUILTIN_CORPORA else (Path(spec).name or "corpus")


def _document_key(document: str) -> str:
    return hashlib.sha256(document.encode("utf-8")).hexdigest()


def holdout_indices(keys: list[str], fraction: float) -> tuple[list[int], list[int]]:
    """Deterministic (train, held-out) index lists: the ceil(fraction * n) items whose keys have
    the smallest sha256 are held out (at least one, never all); both lists are ascending."""
    count = min(len(keys) - 1, max(1, math.ceil(fraction * len(keys))))
    order = sorted(range(len(keys)), key=lambda i: (_document_key(keys[i]), i))
    held = set(order[:count])
    return [i for i in range(len(keys)) if i not in held], sorted(held)


def holdout_split(documents: list[str], fraction: float) -> tuple[list[str], list[str]]:
    """Deterministic (train, held-out) split of documents by the sha256 of their text; both
    sides keep the corpus order (see `holdout_indices`).

    Raises:
        ConfigError: fewer than two documents, so one side would be empty.
    """
    if len(documents) < 2:
        raise ConfigError(
            f"the corpus has {len(documents)} document(s); a train/held-out split needs at "
            "least 2 (documents are separated by blank lines or % lines)"
        )
    train, held = holdout_indices(documents, fraction)
    return [documents[i] for i in train], [documents[i] for i in held]


# ---- JSONL -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Demonstration:
    """A prompt and the response a labeller wrote for it."""

    prompt: str
    response: str
    line: int = 0
    """Line of the JSONL file it came from (for error messages)."""


@dataclass(frozen=True)
class Comparison:
    """A prompt and K >= 2 responses ranked best first; `scores` when the judge gave them."""

    prompt: str
    responses: tuple[str, ...]
    scores: tuple[float, ...] | None = None
    line: int = 0
    """Line of the JSONL file it came from (for error messages)."""


def _records(path: Path):
    """(line number, dict) for each non-blank line of a JSONL file."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ConfigError(f"data file '{path}' does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"data file '{path}' is a directory, not a JSONL file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"data file '{path}' is not UTF-8 text") from None
    found = False
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path}:{number}: not valid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise ConfigError(f"{path}:{number}: expected a JSON object, got {line.strip()[:40]}")
        found = True
        yield number, record
    if not found:
        raise ConfigError(f"data file '{path}' is empty: it has no JSON lines")


def _string_field(record: dict, key: str, where: str) -> str:
    if key not in record:
        raise ConfigError(f"{where}: missing field '{key}'")
    if not isinstance(record[key], str):
        raise ConfigError(f"{where}: field '{key}' must be a string")
    return record[key]


def read_demonstrations(path: Path) -> list[Demonstration]:
    """Demonstrations from a JSONL file of {"prompt", "response"} objects."""
    demos = []
    for number, record in _records(path):
        where = f"{path}:{number}"
        demos.append(
            Demonstration(
                _string_field(record, "prompt", where),
                _string_field(record, "response", where),
                number,
            )
        )
    return demos


def read_comparisons(path: Path) -> list[Comparison]:
    """Comparisons from a JSONL file of {"prompt", "responses": [best..worst], "scores"?}."""
    return [comparison(record, f"{path}:{number}", number) for number, record in _records(path)]


def comparison(record: dict, where: str, line: int = 0) -> Comparison:
    """The checked Comparison of one ranked JSONL record (`read_comparisons`'s check of each
    line; `bellman serve`'s labelling page checks what it appends with it).

    Raises:
        ConfigError: naming `where` ("ranked.jsonl:7") and what is wrong.
    """
    prompt = _string_field(record, "prompt", where)
    if "responses" not in record:
        raise ConfigError(f"{where}: missing field 'responses'")
    responses = record["responses"]
    if not isinstance(responses, list) or not all(isinstance(r, str) for r in responses):
        raise ConfigError(f"{where}: field 'responses' must be a list of strings")
    if len(responses) < 2:
        raise ConfigError(
            f"{where}: 'responses' has {len(responses)} response(s); a comparison needs at "
            "least 2, ranked best first"
        )
    scores = record.get("scores")
    if scores is not None:
        if (
            not isinstance(scores, list)
            or len(scores) != len(responses)
            or not all(isinstance(s, int | float) and not isinstance(s, bool) for s in scores)
        ):
            raise ConfigError(f"{where}: 'scores' must be {len(responses)} numbers")
        scores = tuple(float(s) for s in scores)
    return Comparison(prompt, tuple(responses), scores, line)


def read_prompts(path: Path) -> list[tuple[str, int]]:
    """(prompt, line) of each {"prompt": ...} object of a JSONL file (the prompts of RL)."""
    return [
        (_string_field(record, "prompt", f"{path}:{number}"), number)
        for number, record in _records(path)
    ]


def write_jsonl(path: Path, records: list[dict]) -> None:
    """Write records as JSONL, atomically."""
    from bellman.checkpoint import atomic_write_text

    text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    atomic_write_text(Path(path), text)


def openings(documents: list[str], prompt_words: int, response_words: int) -> list[tuple[str, str]]:
    """(opening, continuation) of each document with more than `prompt_words` words: its first
    `prompt_words` words, and a space and at most `response_words` words that follow."""
    pairs = []
    for document in documents:
        words = document.split()
        if len(words) > prompt_words:
            prompt = " ".join(words[:prompt_words])
            pairs.append(
                (prompt, " " + " ".join(words[prompt_words : prompt_words + response_words]))
            )
    return pairs


def held_out_prompts(corpus: str, holdout_fraction: float, prompt_words: int) -> list[str]:
    """Openings of the corpus's held-out documents (the prompts of labelling and of RL)."""
    _, held = holdout_split(load_corpus(corpus).documents, holdout_fraction)
    return list(dict.fromkeys(prompt for prompt, _ in openings(held, prompt_words, 0)))

"""Corpora, splits, JSONL readers and the rule-based rewards (no torch needed)."""

from __future__ import annotations

import json

import pytest

from bellman.errors import ConfigError
from bellman.lm import data, rewards


def test_documents_split_at_fortune_separators_or_blank_lines():
    assert data.split_documents("A  fool\nand his money.\n%\nSecond one\n%\n") == [
        "A fool and his money.", "Second one",
    ]  # fmt: skip
    assert data.split_documents("one\ntwo\n\n\nthree\n \nfour") == ["one two", "three", "four"]


def test_corpus_from_a_folder_and_builtin_pydoc(tmp_path):
    (tmp_path / "b.txt").write_text("beta one\n\nbeta two\n")
    (tmp_path / "a.txt").write_text("alpha\n\nbeta one\n")  # duplicate dropped
    (tmp_path / "blob.bin").write_bytes(b"\0\1\2")  # binary files are skipped
    corpus = data.load_corpus(str(tmp_path))
    assert corpus.documents == ["alpha", "beta one", "beta two"]
    pydoc = data.load_corpus("pydoc")
    assert len(pydoc.documents) > 1000


def test_holdout_split_is_deterministic_and_order_free():
    documents = [f"document number {i}" for i in range(100)]
    train, held = data.holdout_split(documents, 0.1)
    assert len(held) == 10 and len(train) == 90 and not set(train) & set(held)
    train2, held2 = data.holdout_split(list(reversed(documents)), 0.1)
    assert set(held2) == set(held)
    with pytest.raises(ConfigError, match="at least 2"):
        data.holdout_split(["only one"], 0.1)


def test_missing_and_empty_corpora_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        data.load_corpus(str(tmp_path / "nope.txt"))
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(ConfigError, match="empty.txt' is empty"):
        data.load_corpus(str(tmp_path / "empty.txt"))
    (tmp_path / "folder").mkdir()
    with pytest.raises(ConfigError, match="is empty"):
        data.load_corpus(str(tmp_path / "folder"))


def _jsonl(path, *lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line)
                              for line in lines) + "\n")  # fmt: skip
    return path


def test_jsonl_readers_and_their_errors_name_file_and_line(tmp_path):
    demos = _jsonl(tmp_path / "d.jsonl", {"prompt": "a", "response": "b"}, "",
                   {"prompt": "c", "response": "d"})  # fmt: skip
    assert [(d.prompt, d.response, d.line) for d in data.read_demonstrations(demos)] == [
        ("a", "b", 1), ("c", "d", 3),
    ]  # fmt: skip
    bad = _jsonl(tmp_path / "bad.jsonl", {"prompt": "a", "response": "b"}, {"prompt": "x"})
    with pytest.raises(ConfigError, match=r"bad.jsonl:2: missing field 'response'"):
        data.read_demonstrations(bad)
    broken = _jsonl(tmp_path / "broken.jsonl", "{not json")
    with pytest.raises(ConfigError, match=r"broken.jsonl:1: not valid JSON"):
        data.read_demonstrations(broken)
    ranked = _jsonl(tmp_path / "r.jsonl", {"prompt": "p", "responses": ["a", "b", "c"],
                                           "scores": [3, 2, 1]},
                    {"prompt": "q", "responses": ["only"]})  # fmt: skip
    with pytest.raises(ConfigError, match=r"r.jsonl:2: 'responses' has 1 response"):
        data.read_comparisons(ranked)
    good = _jsonl(tmp_path / "g.jsonl", {"prompt": "p", "responses": ["a", "b"]})
    assert data.read_comparisons(good)[0].responses == ("a", "b")
    with pytest.raises(ConfigError, match="does not exist"):
        data.read_comparisons(tmp_path / "missing.jsonl")


def test_sentiment_and_non_toxicity():
    assert rewards.sentiment("", "What a wonderful, happy day!") > 0.5
    assert rewards.sentiment("", "This is terrible and sad.") < -0.5
    assert rewards.sentiment("", "The table has four legs.") == 0.0
    assert rewards.non_toxicity("", "have a nice day") == 0.0
    assert rewards.non_toxicity("", "you shit, damn it") == -2.0


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("12", 1.0),  # unhedged correct
        ("The answer is twelve.", 1.0),
        ("I think it is 12.", 0.5),  # hedged correct
        ("I don't know.", 0.0),  # abstention
        ("Maybe 13?", -2.0),  # hedged wrong
        ("13", -4.0),  # wrong
        ("Bananas.", -4.0),  # no answer at all: wrong
    ],
)
def test_hallucination_proper_scoring(response, expected):
    assert rewards.hallucination("What is 5 plus 7?", response) == expected


def test_fact_questions_and_judge_rank():
    questions = rewards.fact_questions(30, seed=1)
    assert questions == rewards.fact_questions(30, seed=1)
    for question in questions:
        assert rewards.hallucination(question.prompt, question.answer) == 1.0
    assert rewards.fact_answer("What day comes after Sunday?") == "Monday"
    order, scores = rewards.judge_rank(
        "What is 2 times 3?", ["7", "I don't know", "6", "maybe 6"], rewards.hallucination
    )
    assert order == [2, 3, 1, 0] and scores == [-4.0, 0.0, 1.0, 0.5]
    with pytest.raises(ConfigError, match="did you mean 'sentiment'"):
        rewards.reward_function("sentimen")


def test_the_fortunes_loader_reads_the_quote_files_and_skips_their_indexes(tmp_path, monkeypatch):

    folder = tmp_path / "fortunes"
    (folder / "off").mkdir(parents=True)
    (folder / "wisdom").write_text("Be kind.\n%\nKnow  thyself.\n  - Socrates\n%\nBe kind.\n%\n")
    (folder / "wisdom.dat").write_bytes(b"\0\0\0\x02binary index")
    (folder / "wisdom.u8").write_text("a symlink target in Debian; skipped\n%\n")
    (folder / "off" / "rude").write_text("A rude one.\n%\n")
    monkeypatch.setattr(data, "FORTUNES_DIR", folder)
    corpus = data.load_corpus("fortunes")
    assert corpus.name == "fortunes"
    assert corpus.documents == ["A rude one.", "Be kind.", "Know thyself. - Socrates"]
    monkeypatch.setattr(data, "FORTUNES_DIR", tmp_path / "missing")
    with pytest.raises(ConfigError, match="apt-get install fortunes"):
        data.load_corpus("fortunes")


def test_the_bible_loader_keeps_the_words_of_each_verse(tmp_path, monkeypatch):

    script = tmp_path / "bin" / "bible"
    script.parent.mkdir()
    script.write_text(
        "#!/bin/sh\n"
        "printf 'Gen1:1 In the beginning God created\\n  the heaven.\\n'\n"
        "printf 'Gen1:2 And the earth was without form.\\n\\nRev22:21 Amen.\\n'\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin:/bin")
    corpus = data.load_corpus("bible")
    assert corpus.documents == [
        "In the beginning God created", "And the earth was without form.", "Amen.",
    ]  # fmt: skip
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="apt-get install bible-kjv"):
        data.load_corpus("bible")

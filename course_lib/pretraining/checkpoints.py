"""The course's own small pretrained models, trained by ``scripts/pretrain.py`` and kept in ``data/checkpoints/``.

    model, tokenizer = load_checkpoint("bert")   # BertForPreTraining (MLM + NSP heads) + the course WordPiece

Each checkpoint is a folder ``data/checkpoints/NAME/`` with ``model.safetensors`` (fp32 weights), ``config.json``
(the model's dataclass config, the tokenizer's name, the training recipe and the measured held-out quality) and the
training curve (``curve.csv``, ``curve.png``). A Transformer-XL saved under the authors' names (the shipped one) is
read through ``course_lib.convert.transformer_xl``. Both ``model.safetensors`` and ``config.json`` are checked against
``data/SHA256SUMS`` before anything is read: a changed file is refused with a ``DataFileError``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_model
from tokenizers import Tokenizer
from torch import nn

from course_lib.convert.transformer_xl import config_fields_from_authors, load_transformer_xl, uses_authors_names
from course_lib.models.bert import BertConfig, BertForPreTraining
from course_lib.models.elmo import ElmoBiLM, ElmoConfig
from course_lib.models.gpt import GPT, GPTConfig
from course_lib.models.transformer_xl import TransformerXLConfig, TransformerXLLMHeadModel
from course_lib.paths import DataFileError, data_path
from course_lib.pretraining.objectives import SpecialIds, bert_batch, bert_losses, lm_window_loss
from course_lib.text.batching import encode_corpus
from course_lib.text.corpus import load_shakespeare
from course_lib.text.next_sentence import next_sentence_pairs
from course_lib.text.tokenizers import load_tokenizer

NAMES = ("bert", "gpt2", "gpt1", "transformer-xl", "elmo")
KIND_OF = {"bert": "bert", "gpt2": "gpt", "gpt1": "gpt", "transformer-xl": "transformer_xl", "elmo": "elmo"}
MODELS = {  # kind -> (config dataclass, model class)
    "gpt": (GPTConfig, GPT),
    "bert": (BertConfig, BertForPreTraining),
    "transformer_xl": (TransformerXLConfig, TransformerXLLMHeadModel),
    "elmo": (ElmoConfig, ElmoBiLM),
}
REFERENCE_CHARS = 20_000  # the reference slice: the first characters of the held-out plays


def check_name(name: str) -> str:
    """The checkpoint's kind; ValueError naming the known checkpoints otherwise."""
    if name not in KIND_OF:
        raise ValueError(f"checkpoint must be one of {NAMES}, got {name!r}")
    return KIND_OF[name]


def config_from_dict(config_class: type, fields: dict):
    """A dataclass config from its JSON fields; ValueError naming unknown keys (a config from another model)."""
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"{config_class.__name__} has no field(s) {unknown}")
    return config_class(**fields)


def build_model(kind: str, config_fields: dict) -> nn.Module:
    """A freshly initialised model of ``kind`` from its config fields."""
    if kind not in MODELS:
        raise ValueError(f"kind must be one of {tuple(MODELS)}, got {kind!r}")
    config_class, model_class = MODELS[kind]
    return model_class(config_from_dict(config_class, config_fields))


def save_checkpoint(model: nn.Module, folder: Path, metadata: dict) -> None:
    """Write ``model.safetensors`` (tied weights stored once) and ``config.json`` (``metadata`` + the config)."""
    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, str(folder / "model.safetensors"))
    record = {**metadata, "config": dataclasses.asdict(model.config)}
    (folder / "config.json").write_text(json.dumps(record, indent=2) + "\n")


def verified_file(name: str, file: str) -> Path:
    """``data/checkpoints/NAME/FILE`` after its sha256 check; the error also says how to restore or retrain it."""
    check_name(name)
    try:
        return data_path(f"checkpoints/{name}/{file}")
    except DataFileError as error:
        raise DataFileError(f"{error} The committed checkpoint comes back with: git checkout -- data/checkpoints/"
                            f"{name}/ ; or retrain it with: python scripts/pretrain.py {name}") from None


def read_config(name: str) -> dict:
    """The verified ``config.json`` of checkpoint ``name`` as a dict."""
    return json.loads(verified_file(name, "config.json").read_text())


def load_checkpoint(name: str) -> tuple[nn.Module, Tokenizer]:
    """``(model in eval mode, tokenizer)`` of course checkpoint ``name``, after verifying both files' sha256."""
    kind = check_name(name)
    record = read_config(name)
    weights = verified_file(name, "model.safetensors")  # DataFileError if missing or changed
    fields = record["config"]
    if kind == "transformer_xl" and uses_authors_names(fields):  # saved before the course's names: convert
        config = config_from_dict(TransformerXLConfig, config_fields_from_authors(fields))
        model = load_transformer_xl(load_file(str(weights)), config)
    else:
        model = build_model(kind, fields)
        load_model(model, str(weights), strict=True)
    return model.eval(), load_tokenizer(record["tokenizer"])


def reference_ids(tokenizer: Tokenizer) -> torch.Tensor:
    """The token ids of the reference slice: the first ``REFERENCE_CHARS`` characters of the held-out plays."""
    return encode_corpus(load_shakespeare("valid")[:REFERENCE_CHARS], tokenizer)


@torch.no_grad()
def reference_loss(kind: str, model: nn.Module, tokenizer: Tokenizer) -> float:
    """The held-out loss on a small fixed slice, recorded at training time and re-checked by the tests.

    LMs: 4 windows of 128 predicted tokens (XL: 2 windows of 256, read in segments with memory). BERT: MLM + NSP loss
    of 16 pairs built and masked with a generator seeded 0.
    """
    was_training = model.training
    model.eval()
    ids = reference_ids(tokenizer)
    if kind == "bert":
        generator = torch.Generator().manual_seed(0)
        pairs = next_sentence_pairs(ids, 16, 24, generator)
        loss = bert_losses(model, bert_batch(pairs, SpecialIds.from_tokenizer(tokenizer), generator))["loss"]
    else:
        rows, length = (2, 256) if kind == "transformer_xl" else (4, 128)
        windows = ids[:rows * (length + 1)].view(rows, length + 1)  # [rows, length + 1]
        loss = lm_window_loss(kind, model, windows)
    model.train(was_training)
    return float(loss)

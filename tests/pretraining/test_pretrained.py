"""course_lib.pretraining.pretrained: real all-MiniLM-L6-v2 weights equal transformers' BertModel on the same files; Hub path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import save_file

from course_lib.models.bert import BertModel
from course_lib.pretraining.pretrained import HubUnavailableError, from_hub, load_minilm, model_from_files
from course_lib.text.batching import encode_texts
from course_lib.text.tokenizers import minilm_dir

TOLERANCE = dict(atol=1e-5, rtol=1e-5)
SENTENCES = [
    "The bank raised its interest rates.",
    "We sat on the river bank and watched the boats go by for the whole afternoon.",
    "Transfer learning!",
]
PAIR = [("Where is the station?", "It is two streets to the left of the old cinema.")]


@pytest.fixture(scope="module")
def models():
    ours, tokenizer = load_minilm()
    theirs = transformers.BertModel.from_pretrained(
        str(minilm_dir()), attn_implementation="eager", local_files_only=True
    ).eval()
    return ours, theirs, tokenizer


def compare(ours, theirs, batch) -> None:
    with torch.no_grad():
        expected = theirs(**batch, output_attentions=True, output_hidden_states=True)
        got = ours(**batch, output_attentions=True)
        fused = ours(**batch)
    # Only real tokens are compared. Outputs at padding positions are read by nobody, and how they come out depends
    # on the order of float sums: up to 6e-5 apart for the fused kernel (as between transformers' own "sdpa" and
    # "eager" paths) and for transformers 4.x's eager path (2.5e-5 measured with 4.45). Real tokens agree to 1e-5.
    real = batch["attention_mask"].bool()  # [batch, tokens]
    torch.testing.assert_close(got.hidden_states[-1][real], expected.last_hidden_state[real], **TOLERANCE)
    torch.testing.assert_close(fused.hidden_states[-1][real], expected.last_hidden_state[real], **TOLERANCE)
    torch.testing.assert_close(got.pooled, expected.pooler_output, **TOLERANCE)
    torch.testing.assert_close(fused.pooled, expected.pooler_output, **TOLERANCE)
    assert len(got.attentions) == 6
    for layer, (a, b) in enumerate(zip(got.attentions, expected.attentions, strict=True)):
        a, b = a.transpose(1, 2)[real], b.transpose(1, 2)[real]  # [real queries, heads, keys]
        torch.testing.assert_close(a, b, **TOLERANCE, msg=lambda m, i=layer: f"attention of layer {i}: {m}")
    for layer, (a, b) in enumerate(zip(got.hidden_states, expected.hidden_states, strict=True)):
        torch.testing.assert_close(a[real], b[real], **TOLERANCE, msg=lambda m, i=layer: f"hidden state {i}: {m}")


def test_load_minilm_gives_a_6_layer_384_wide_bert(models):
    ours, _, tokenizer = models
    assert isinstance(ours, BertModel) and not ours.training
    assert (ours.config.n_layers, ours.config.dim, ours.config.n_heads) == (6, 384, 12)
    assert tokenizer.encode("hello world").tokens == ["[CLS]", "hello", "world", "[SEP]"]


def test_padded_batch_matches_transformers(models):
    ours, theirs, tokenizer = models
    batch = encode_texts(tokenizer, SENTENCES)
    assert (batch["attention_mask"] == 0).any(), "the batch should contain padding"
    compare(ours, theirs, batch)


def test_single_sentences_match_transformers(models):
    ours, theirs, tokenizer = models
    for sentence in SENTENCES[:2]:
        compare(ours, theirs, encode_texts(tokenizer, [sentence]))


def test_sentence_pair_matches_transformers(models):
    ours, theirs, tokenizer = models
    batch = encode_texts(tokenizer, [a for a, _ in PAIR], [b for _, b in PAIR], max_length=512)
    assert batch["token_type_ids"].sum() > 0, "sentence B should have segment id 1"
    compare(ours, theirs, batch)


def test_padding_does_not_change_a_sentence(models):
    ours, _, tokenizer = models
    alone = encode_texts(tokenizer, [SENTENCES[2]])
    padded = encode_texts(tokenizer, SENTENCES)
    length = alone["input_ids"].shape[1]
    with torch.no_grad():
        a = ours(**alone).hidden_states[-1][0]
        b = ours(**padded).hidden_states[-1][2, :length]
    torch.testing.assert_close(a, b, **TOLERANCE)


# --- course_lib.pretraining.pretrained: the optional Hugging Face Hub path ------------------------------------------------------


def test_from_hub_offline_fails_with_one_clear_sentence(monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*args, **kwargs):
        raise LocalEntryNotFoundError("Cannot find the requested files in the disk cache")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(HubUnavailableError) as caught:
        from_hub("gpt2")
    message = str(caught.value)
    assert "'gpt2'" in message and "load_minilm()" in message and "LocalEntryNotFoundError" in message
    assert message.endswith(".") and ". " not in message, "one sentence"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_from_hub_with_hf_hub_offline_and_an_empty_cache(tmp_path):
    environment = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path), HF_HUB_CACHE=str(tmp_path / "hub"),
                       HUGGINGFACE_HUB_CACHE=str(tmp_path / "hub"), OMP_NUM_THREADS="1")
    script = "from course_lib.pretraining.pretrained import from_hub; from_hub('bert-base-uncased')"
    result = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("course_lib.pretraining.pretrained.HubUnavailableError: Could not get 'bert-base-uncased'")
    assert "load_minilm()" in last_line


def save_tiny_hub_model(folder: Path, hf_model) -> None:
    """What the Hub would serve: config.json + model.safetensors from save_pretrained, and a tokenizer.json."""
    hf_model.save_pretrained(folder)
    shutil.copy(minilm_dir() / "tokenizer.json", folder / "tokenizer.json")


@pytest.mark.parametrize("kind", ["gpt2", "openai-gpt", "bert"])
def test_from_hub_converts_what_the_hub_serves(kind, tmp_path, monkeypatch):
    import huggingface_hub

    torch.manual_seed(0)
    if kind == "gpt2":
        hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
            vocab_size=40, n_positions=16, n_embd=16, n_layer=2, n_head=2, bos_token_id=None, eos_token_id=None))
    elif kind == "openai-gpt":
        hf = transformers.OpenAIGPTLMHeadModel(transformers.OpenAIGPTConfig(
            vocab_size=40, n_positions=16, n_embd=16, n_layer=2, n_head=2))
    else:
        hf = transformers.BertForPreTraining(transformers.BertConfig(
            vocab_size=40, max_position_embeddings=16, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=32))
    hf.eval()
    save_tiny_hub_model(tmp_path, hf)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, filename, **kw: str(tmp_path / filename))
    model, tokenizer = from_hub(f"tiny/{kind}")
    assert not model.training and tokenizer.get_vocab_size() == 30522
    input_ids = torch.randint(0, 40, (2, 9))
    with torch.no_grad():
        expected = hf(input_ids)
        got = model(input_ids)
    expected_logits = expected.prediction_logits if kind == "bert" else expected.logits
    torch.testing.assert_close(got.logits, expected_logits, **TOLERANCE)


def test_model_from_files_rejects_unknown_model_types(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5"}))
    save_file({"w": torch.zeros(1)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="not 't5'"):
        model_from_files(tmp_path / "config.json", tmp_path / "model.safetensors")

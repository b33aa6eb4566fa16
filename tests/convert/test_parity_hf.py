"""course_lib's GPT-1, GPT-2 and BERT equal Hugging Face transformers' on tiny random models (fp32, 1e-5)."""

from __future__ import annotations

import pytest
import torch
import transformers

from course_lib.convert import (
    bert_config_from_hf,
    gpt2_config_from_hf,
    load_bert,
    load_gpt2,
    load_openai_gpt,
    openai_gpt_config_from_hf,
)
from course_lib.models.bert import BertForPreTraining
from course_lib.models.generation import generate

TOLERANCE = dict(atol=1e-5, rtol=1e-5)
VOCAB, POSITIONS, DIM, LAYERS, HEADS = 97, 32, 32, 2, 4


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Give every parameter (LayerNorm and biases too) random values, so no parameter can hide a wrong mapping."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)


def right_padded_batch(seed: int, batch: int = 3, tokens: int = 11) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids; row r is padded (with id 0) on the right after ``tokens - 3 * r`` real tokens."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, VOCAB, (batch, tokens), generator=generator)
    attention_mask = torch.ones(batch, tokens, dtype=torch.long)
    for row in range(batch):
        attention_mask[row, tokens - 3 * row :] = 0
    return input_ids.masked_fill(attention_mask == 0, 0), attention_mask


def assert_all_close(ours, theirs, what: str) -> None:
    assert len(ours) == len(theirs), f"{what}: {len(ours)} tensors vs {len(theirs)}"
    for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        torch.testing.assert_close(a, b, **TOLERANCE, msg=lambda m, i=index: f"{what}[{i}]: {m}")


def hf_gpt(kind: str):
    """A tiny random Hugging Face GPT-1 or GPT-2 with eager attention, and our converted copy."""
    if kind == "openai-gpt":
        hf_config = transformers.OpenAIGPTConfig(
            vocab_size=VOCAB, n_positions=POSITIONS, n_embd=DIM, n_layer=LAYERS, n_head=HEADS
        )
        hf = transformers.OpenAIGPTLMHeadModel._from_config(hf_config, attn_implementation="eager")
    else:
        hf_config = transformers.GPT2Config(
            vocab_size=VOCAB, n_positions=POSITIONS, n_embd=DIM, n_layer=LAYERS, n_head=HEADS,
            bos_token_id=None, eos_token_id=None,
        )
        hf = transformers.GPT2LMHeadModel._from_config(hf_config, attn_implementation="eager")
    randomize(hf, seed=1)
    hf.eval()
    if kind == "openai-gpt":
        ours = load_openai_gpt(hf.state_dict(), openai_gpt_config_from_hf(hf.config.to_dict()))
    else:
        ours = load_gpt2(hf.state_dict(), gpt2_config_from_hf(hf.config.to_dict()))
    return hf, ours.eval()


@pytest.fixture(scope="module", params=["openai-gpt", "gpt2"])
def gpt_pair(request):
    return hf_gpt(request.param)


@pytest.mark.parametrize("padded", [False, True], ids=["full", "right-padded"])
def test_gpt_logits_hidden_states_attentions_equal(gpt_pair, padded):
    hf, ours = gpt_pair
    input_ids, attention_mask = right_padded_batch(seed=2)
    if not padded:
        attention_mask = torch.ones_like(attention_mask)
    with torch.no_grad():
        theirs = hf(input_ids, attention_mask=attention_mask, output_hidden_states=True, output_attentions=True)
        explicit = ours(input_ids, attention_mask=attention_mask, output_attentions=True)
        fused = ours(input_ids, attention_mask=attention_mask)  # scaled_dot_product_attention path
    torch.testing.assert_close(explicit.logits, theirs.logits, **TOLERANCE)
    torch.testing.assert_close(fused.logits, theirs.logits, **TOLERANCE)
    assert len(explicit.hidden_states) == LAYERS + 1
    assert_all_close(explicit.hidden_states, theirs.hidden_states, "hidden_states")
    assert_all_close(fused.hidden_states, theirs.hidden_states, "hidden_states (fused)")
    assert len(explicit.attentions) == LAYERS and explicit.attentions[0].shape == (3, HEADS, 11, 11)
    assert_all_close(explicit.attentions, theirs.attentions, "attentions")
    assert fused.attentions is None


def test_gpt_greedy_generation_identical_for_20_tokens(gpt_pair):
    hf, ours = gpt_pair
    prompt = torch.tensor([[5, 17, 42, 8], [61, 3, 3, 90]])
    theirs = hf.generate(prompt, max_new_tokens=20, do_sample=False, pad_token_id=0, eos_token_id=None,
                         attention_mask=torch.ones_like(prompt))
    mine = generate(ours, prompt, max_new_tokens=20)
    assert mine.shape == (2, 24)
    assert torch.equal(mine, theirs)


def test_gpt_converter_rejects_missing_and_extra_keys():
    hf, ours = hf_gpt("gpt2")
    state = dict(hf.state_dict())
    config = gpt2_config_from_hf(hf.config.to_dict())
    removed = state.pop("transformer.h.1.mlp.c_fc.bias")
    with pytest.raises(ValueError, match=r"missing 1 key\(s\): h\.1\.mlp\.c_fc\.bias"):
        load_gpt2(state, config)
    state["transformer.h.1.mlp.c_fc.bias"] = removed
    state["transformer.h.1.mlp.surprise"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"unexpected key\(s\): h\.1\.mlp\.surprise"):
        load_gpt2(state, config)
    del state["transformer.h.1.mlp.surprise"]
    state["transformer.wpe.weight"] = torch.zeros(POSITIONS + 1, DIM)
    with pytest.raises(ValueError, match=r"shape mismatch: wpe\.weight"):
        load_gpt2(state, config)


def hf_bert():
    hf_config = transformers.BertConfig(
        vocab_size=VOCAB, max_position_embeddings=POSITIONS, hidden_size=DIM, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, intermediate_size=3 * DIM,
    )
    hf = transformers.BertForPreTraining._from_config(hf_config, attn_implementation="eager")
    randomize(hf, seed=3)
    hf.eval()
    ours = load_bert(hf.state_dict(), bert_config_from_hf(hf.config.to_dict()))
    return hf, ours.eval()


@pytest.fixture(scope="module")
def bert_pair():
    return hf_bert()


@pytest.mark.parametrize("padded", [False, True], ids=["full", "right-padded"])
def test_bert_logits_hidden_states_attentions_equal(bert_pair, padded):
    hf, ours = bert_pair
    assert isinstance(ours, BertForPreTraining)
    input_ids, attention_mask = right_padded_batch(seed=4)
    if not padded:
        attention_mask = torch.ones_like(attention_mask)
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, 5:] = 1  # sentence B from the sixth token on
    inputs = dict(attention_mask=attention_mask, token_type_ids=token_type_ids)
    with torch.no_grad():
        theirs = hf(input_ids, **inputs, output_hidden_states=True, output_attentions=True)
        explicit = ours(input_ids, **inputs, output_attentions=True)
        fused = ours(input_ids, **inputs)
    for mine in (explicit, fused):
        torch.testing.assert_close(mine.logits, theirs.prediction_logits, **TOLERANCE)
        torch.testing.assert_close(mine.next_sentence_logits, theirs.seq_relationship_logits, **TOLERANCE)
        assert_all_close(mine.hidden_states, theirs.hidden_states, "hidden_states")
    assert len(explicit.hidden_states) == LAYERS + 1
    assert_all_close(explicit.attentions, theirs.attentions, "attentions")


def test_bert_converter_rejects_missing_and_extra_keys(bert_pair):
    hf, _ = bert_pair
    config = bert_config_from_hf(hf.config.to_dict())
    state = dict(hf.state_dict())
    del state["bert.encoder.layer.0.attention.self.key.weight"]
    with pytest.raises(ValueError, match=r"missing 1 key\(s\): bert\.encoder\.layer\.0\.attention\.self\.key\.weight"):
        load_bert(state, config)
    state = dict(hf.state_dict())
    state["bert.encoder.layer.2.output.dense.weight"] = torch.zeros(DIM, 3 * DIM)  # a third layer the config lacks
    with pytest.raises(ValueError, match=r"unexpected key\(s\): bert\.encoder\.layer\.2\.output\.dense\.weight"):
        load_bert(state, config)
    state = dict(hf.state_dict())
    state["cls.predictions.decoder.weight"] = state["cls.predictions.decoder.weight"] + 1.0  # untied
    with pytest.raises(ValueError, match="should be tied"):
        load_bert(state, config)


def test_old_checkpoint_layouts_load():
    """Hub checkpoints of 2019 store causal-mask buffers (GPT) and TensorFlow's gamma/beta LayerNorm names (BERT)."""
    hf, ours = hf_gpt("gpt2")
    state = {key.removeprefix("transformer."): tensor for key, tensor in hf.state_dict().items()}
    del state["lm_head.weight"]  # a bare GPT2Model checkpoint has no head: the tie supplies it
    for layer in range(LAYERS):
        state[f"h.{layer}.attn.bias"] = torch.tril(torch.ones(1, 1, POSITIONS, POSITIONS))
        state[f"h.{layer}.attn.masked_bias"] = torch.tensor(-1e4)
    reloaded = load_gpt2(state, gpt2_config_from_hf(hf.config.to_dict())).eval()
    input_ids = torch.randint(0, VOCAB, (2, 6))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids).logits, ours(input_ids).logits)

    hf_b, ours_b = hf_bert()
    legacy = {}
    for key, tensor in hf_b.state_dict().items():
        key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        legacy[key] = tensor
    legacy["bert.embeddings.position_ids"] = torch.arange(POSITIONS)[None]
    reloaded_b = load_bert(legacy, bert_config_from_hf(hf_b.config.to_dict())).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded_b(input_ids).logits, ours_b(input_ids).logits)

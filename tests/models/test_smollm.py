"""course_lib's SmolLM equals Hugging Face's LlamaForCausalLM on a tiny random config (fp32, 1e-5; no download)."""

import pytest
import torch
import transformers

from course_lib.convert.llama import LLAMA_KEYS, load_llama, smollm_config_from_hf, to_hf_llama_state_dict
from course_lib.models.smollm import SmolLM, SmolLMConfig, SmolLMForSequenceClassification, positions_from_mask

TOLERANCE = dict(atol=1e-5, rtol=1e-5)
VOCAB = 97


@pytest.fixture(scope="module")
def pair():
    """A tiny random HF Llama (6 query heads, 2 key/value heads, rope base 100,000) and our converted copy."""
    hf_config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=6,
        num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, tie_word_embeddings=True,
        rope_theta=100000.0,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )
    hf = transformers.LlamaForCausalLM._from_config(hf_config, attn_implementation="eager").eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in hf.parameters():  # norms too: no parameter may hide a wrong mapping
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    ours = load_llama(hf.state_dict(), smollm_config_from_hf(hf_config.to_dict())).eval()
    return hf, ours


def padded_batch(side: str):
    """Three rows of random ids: full, 3 pads, 6 pads, on the given side."""
    generator = torch.Generator().manual_seed(2)
    input_ids = torch.randint(1, VOCAB, (3, 11), generator=generator)
    attention_mask = torch.ones(3, 11, dtype=torch.long)
    for row, pads in enumerate((0, 3, 6)):
        if pads:
            attention_mask[row, slice(0, pads) if side == "left" else slice(11 - pads, 11)] = 0
    return input_ids.masked_fill(attention_mask == 0, 0), attention_mask


@pytest.mark.parametrize("side", ["none", "right", "left"])
def test_logits_hidden_states_attentions_equal_transformers(pair, side):
    hf, ours = pair
    input_ids, attention_mask = padded_batch("right" if side == "none" else side)
    if side == "none":
        attention_mask = torch.ones_like(attention_mask)
    real = attention_mask.bool()  # compare real tokens; padded queries are don't-cares in both
    with torch.no_grad():
        out = ours(input_ids, attention_mask, output_attentions=True)
        theirs = hf(input_ids, attention_mask=attention_mask, position_ids=positions_from_mask(attention_mask),
                    output_hidden_states=True, output_attentions=True)
    torch.testing.assert_close(out.logits[real], theirs.logits[real], **TOLERANCE)
    assert len(out.hidden_states) == len(theirs.hidden_states) == 3  # embeddings + 2 layers (last one normed)
    for a, b in zip(out.hidden_states, theirs.hidden_states, strict=True):
        torch.testing.assert_close(a[real], b[real], **TOLERANCE)
    for a, b in zip(out.attentions, theirs.attentions, strict=True):
        assert a.shape == (3, 6, 11, 11)  # [batch, heads, query, key]
        torch.testing.assert_close(a.transpose(1, 2)[real], b.transpose(1, 2)[real], **TOLERANCE)
    fused = ours(input_ids, attention_mask)  # the SDPA path, no weights
    assert fused.attentions is None
    torch.testing.assert_close(fused.logits[real], out.logits[real], **TOLERANCE)


def test_a_left_padded_row_equals_the_row_alone(pair):
    _, ours = pair
    input_ids, attention_mask = padded_batch("left")
    with torch.no_grad():
        batch = ours(input_ids, attention_mask).logits
        alone = ours(input_ids[2:, 6:]).logits
    torch.testing.assert_close(batch[2, 6:], alone[0], **TOLERANCE)


def test_cached_greedy_generation_equals_transformers_generate(pair):
    hf, ours = pair
    input_ids, attention_mask = padded_batch("left")
    mine = ours.generate(input_ids, 8, attention_mask=attention_mask)
    theirs = hf.generate(input_ids, attention_mask=attention_mask, max_new_tokens=8, do_sample=False,
                         pad_token_id=0, eos_token_id=None)
    assert torch.equal(mine, theirs)
    # the cache changes the bookkeeping, not the result: equal to re-running the whole sequence every step
    ids = input_ids[:1]
    for _ in range(8):
        ids = torch.cat([ids, ours(ids).logits[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(ours.generate(input_ids[:1], 8), ids)


def test_classifier_reads_the_last_real_token_on_either_side(pair):
    _, ours = pair
    classifier = SmolLMForSequenceClassification(ours.config, n_classes=2).eval()
    classifier.lm.load_state_dict(ours.state_dict())
    left_ids, left_mask = padded_batch("left")
    right_ids, right_mask = padded_batch("right")
    right_ids[1, :8], right_ids[2, :5] = left_ids[1, 3:], left_ids[2, 6:]  # the same real tokens
    with torch.no_grad():
        left = classifier(left_ids, left_mask, labels=torch.tensor([0, 1, 1]))
        right = classifier(right_ids, right_mask)
    assert left.logits.shape == (3, 2) and left.loss.ndim == 0
    torch.testing.assert_close(left.logits[1:], right.logits[1:], **TOLERANCE)


def test_config_preset_and_the_key_table_round_trip(pair):
    config = SmolLMConfig.smollm2_135m()
    assert (config.n_layers, config.dim, config.n_heads, config.n_kv_heads, config.head_dim) == (30, 576, 9, 3, 64)
    assert (config.hidden_dim, config.vocab_size, config.rope_base) == (1536, 49152, 100000.0)
    hf, ours = pair
    assert set(to_hf_llama_state_dict(ours)) == set(hf.state_dict())
    assert len(LLAMA_KEYS) == 11
    with torch.device("meta"):
        big = SmolLM(config)
    assert sum(p.numel() for p in big.parameters()) == 134_515_008  # SmolLM2-135M, embedding counted once (tied)
    with pytest.raises(ValueError, match="multiple of n_kv_heads"):
        SmolLMConfig(n_heads=9, n_kv_heads=2)


def test_lm_loss_is_the_course_next_token_loss_with_padding_skipped():
    from course_lib.training.losses import next_token_loss, shift_labels

    torch.manual_seed(0)
    model = SmolLM(SmolLMConfig(vocab_size=40, dim=16, n_layers=1, n_heads=4, n_kv_heads=2, hidden_dim=24)).eval()
    ids = torch.randint(40, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0  # left padding
    out = model(ids, attention_mask=mask, labels=ids)
    torch.testing.assert_close(out.loss, next_token_loss(out.logits[:, :-1], shift_labels(ids, mask)))

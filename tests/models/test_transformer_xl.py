"""Transformer-XL: relative shift, recurrence == full context, stop-gradient, absolute positions break, bad input."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from course_lib.blocks.relative_attention import RelativePositionEmbedding, relative_distances, relative_shift
from course_lib.models.transformer_xl import TransformerXLConfig, TransformerXLLMHeadModel
from course_lib.models.transformer_xl_memory import attention_mask_with_memory
from course_lib.training.eval_speed import format_speed_table, measure_eval_speedup

CONFIG = TransformerXLConfig(vocab_size=40, n_layers=2, n_heads=2, dim=16, head_dim=8, hidden_dim=32, dropout=0.0,
                             segment_len=5, mem_len=15)


def _model(config=CONFIG, seed=0) -> TransformerXLLMHeadModel:
    torch.manual_seed(seed)
    return TransformerXLLMHeadModel(config).eval()


def _tokens(batch=2, length=20, seed=1):
    torch.manual_seed(seed)
    return torch.randint(0, CONFIG.vocab_size, (batch, length))


@pytest.mark.parametrize("query_len,key_len", [(4, 4), (4, 9), (1, 6)])
def test_relative_shift_equals_an_explicit_gather(query_len, key_len):
    torch.manual_seed(0)
    # column c of a row stands for distance klen-1-c; non-contiguous input (as einsum may return) included
    scores = torch.randn(key_len, 3, 2, query_len).permute(1, 2, 3, 0)  # [batch, heads, query, distance column]
    shifted = relative_shift(scores)
    memory_len = key_len - query_len
    for i in range(query_len):
        for j in range(memory_len + i + 1):  # every key query i may attend
            distance = memory_len + i - j
            torch.testing.assert_close(shifted[..., i, j], scores[..., i, key_len - 1 - distance], rtol=0, atol=0)
    # gradients flow back to the same places as through the gather (junk entries are masked, so get none)
    i, j = torch.arange(query_len)[:, None], torch.arange(key_len)[None, :]
    allowed = j <= i + memory_len
    gather_index = (j + query_len - 1 - i).clamp(max=key_len - 1).expand_as(scores)
    weights = torch.randn(scores.shape)
    gradients = []
    for shift in (relative_shift, lambda x: x.gather(-1, gather_index)):
        leaf = scores.detach().clone().requires_grad_(True)
        probabilities = torch.softmax(shift(leaf).masked_fill(~allowed, float("-inf")), dim=-1)
        (probabilities * weights).sum().backward()
        gradients.append(leaf.grad)
    torch.testing.assert_close(gradients[0], gradients[1])


def test_relative_position_embedding_concatenates_sin_and_cos():
    embedding = RelativePositionEmbedding(6)
    distances = relative_distances(5)
    assert distances.tolist() == [4, 3, 2, 1, 0]
    inverse_frequency = 1 / 10000 ** (torch.arange(0, 6, 2) / 6)
    angles = distances[:, None] * inverse_frequency
    torch.testing.assert_close(embedding(distances), torch.cat([angles.sin(), angles.cos()], -1))
    assert relative_distances(5, max_distance=2).tolist() == [2, 2, 2, 1, 0]


@pytest.mark.parametrize("changes", [
    {},
    {"pre_norm": True},
    {"same_length": True, "mem_len": 20},
    {"max_distance": 3},
    {"mem_len": 100},
])
@pytest.mark.parametrize("grad_enabled", [False, True])
def test_segments_with_memory_equal_one_full_pass(changes, grad_enabled):
    model = _model(replace(CONFIG, **changes))
    tokens = _tokens()
    with torch.set_grad_enabled(grad_enabled):
        full = model(tokens).logits
        segmented = model.forward_in_segments(tokens).logits
        by_hand, mems = [], None  # the same recurrence written out, memory as a plain list
        for start in range(0, tokens.size(1), CONFIG.segment_len):
            output = model(tokens[:, start:start + CONFIG.segment_len], mems=None if mems is None else list(mems))
            by_hand.append(output.logits)
            mems = output.mems
    torch.testing.assert_close(segmented, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat(by_hand, 1), full, atol=1e-5, rtol=1e-5)


def test_memory_holds_n_layers_plus_one_states_of_at_most_mem_len():
    model = _model()
    mems = None
    for segment in _tokens(length=20).split(CONFIG.segment_len, dim=1):
        mems = model(segment, mems=mems).mems
        assert len(mems) == CONFIG.n_layers + 1
    assert all(m.shape == (2, CONFIG.mem_len, CONFIG.dim) for m in mems)
    assert model(_tokens(length=3), mems=None).mems[0].shape == (2, 3, CONFIG.dim)
    assert _model(replace(CONFIG, mem_len=0))(_tokens(length=3)).mems is None


def test_gradients_do_not_reach_the_memory():
    model = _model(replace(CONFIG, dropout=0.1)).train()
    first, second = _tokens(length=10).split(5, dim=1)
    out1 = model(first)
    out1.hidden_states[0].retain_grad()  # the embedding output, from which mems[0] was copied
    assert all(not m.requires_grad and m.grad_fn is None for m in out1.mems)
    out2 = model(second, mems=out1.mems, labels=second)
    out2.loss.backward()
    assert out1.hidden_states[0].grad is None, "the second segment's loss flowed into the first segment"
    assert model.transformer.u.grad is not None  # ... while the weights did get gradients


def test_absolute_positions_break_when_segments_are_reused():
    model = _model(replace(CONFIG, relative_positions=False))
    tokens = _tokens()
    with torch.no_grad():
        full = model(tokens).logits
        segmented = model.forward_in_segments(tokens).logits
    first = slice(0, CONFIG.segment_len)
    torch.testing.assert_close(segmented[:, first], full[:, first], atol=1e-5, rtol=1e-5)  # positions 0..4 agree
    assert (segmented[:, CONFIG.segment_len:] - full[:, CONFIG.segment_len:]).abs().max() > 1e-2  # 0 1 2 3 4 0 ...


@pytest.mark.parametrize("relative", [True, False])
def test_attentions_cover_memory_and_match_the_fused_path(relative):
    model = _model(replace(CONFIG, relative_positions=relative))
    first, second = _tokens(length=9).split([5, 4], dim=1)
    with torch.no_grad():
        mems = model(first).mems
        explicit = model(second, mems=mems, output_attentions=True)
        fused = model(second, mems=list(mems))
    torch.testing.assert_close(explicit.logits, fused.logits, atol=1e-5, rtol=1e-5)
    assert len(explicit.attentions) == CONFIG.n_layers
    for probabilities in explicit.attentions:
        assert probabilities.shape == (2, CONFIG.n_heads, 4, 5 + 4)  # [batch, heads, query, memory + query]
        torch.testing.assert_close(probabilities.sum(-1), torch.ones(2, CONFIG.n_heads, 4))
        hidden_future = ~attention_mask_with_memory(4, 5, CONFIG.mem_len)
        assert torch.all(probabilities[..., hidden_future] == 0)


def test_same_length_gives_every_query_mem_len_keys():
    allowed = attention_mask_with_memory(query_len=4, memory_len=6, mem_len=6, same_length=True)
    assert allowed.sum(1).tolist() == [6, 6, 6, 6]
    assert allowed[0].tolist() == [False] + [True] * 6 + [False] * 3


def test_changed_weights_are_used_with_an_old_memory():
    model = _model()
    first, second = _tokens(length=10).split(5, dim=1)
    with torch.no_grad():
        mems = model(first).mems
        model(second, mems=mems)
        for block in model.transformer.blocks:
            for projection in (block.attn.query, block.attn.key, block.attn.value):  # the authors' qkv_net
                projection.weight.mul_(1.5)
            block.attn.position.weight.mul_(0.5)
        reused = model(second, mems=mems).logits
        recomputed = model(second, mems=[m.clone() for m in mems]).logits
    torch.testing.assert_close(reused, recomputed, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("in_place", [True, False])
def test_a_changed_memory_is_read_as_it_is_now(in_place):
    model = _model()
    first, second = _tokens(length=10).split(5, dim=1)
    with torch.no_grad():
        mems = model(first).mems
        if in_place:
            mems[1].mul_(2.0)  # an in-place change of a state
        else:
            mems[1] = mems[1] * 2.0  # a replaced state
        reused = model(second, mems=mems).logits
        recomputed = model(second, mems=[m.clone() for m in mems]).logits
    torch.testing.assert_close(reused, recomputed, atol=1e-6, rtol=1e-6)


def test_loss_uses_next_token_labels():
    model = _model()
    tokens = _tokens(length=6)
    output = model(tokens[:, :-1], labels=tokens[:, 1:])
    expected = F.cross_entropy(output.logits.flatten(0, 1), tokens[:, 1:].flatten())
    torch.testing.assert_close(output.loss, expected)
    segmented = model.forward_in_segments(tokens[:, :-1], labels=tokens[:, 1:], segment_len=2)
    torch.testing.assert_close(segmented.loss, expected, atol=1e-5, rtol=1e-5)


def test_bad_input_says_what_is_wrong():
    model = _model()
    mems = model(_tokens(batch=2, length=5)).mems
    with pytest.raises(ValueError, match="memory batch size 2 does not match the input batch size 3"):
        model(_tokens(batch=3, length=5), mems=mems)
    with pytest.raises(ValueError, match="expected n_layers \\+ 1 = 3 memories"):
        model(_tokens(length=5), mems=mems[:2])
    with pytest.raises(ValueError, match="memory width"):
        model(_tokens(length=5), mems=[m[..., :8] for m in mems])
    with pytest.raises(ValueError, match="non-empty"):
        model(torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="labels shape"):
        model(_tokens(length=5), labels=_tokens(length=4))
    with pytest.raises(ValueError, match="same_length=True needs mem_len > 0"):
        replace(CONFIG, same_length=True, mem_len=0)
    with pytest.raises(ValueError, match="even"):
        replace(CONFIG, dim=15)


def test_speed_table_runs_on_a_tiny_model():
    rows = measure_eval_speedup((8, 16), config=CONFIG, vanilla_predictions=1, xl_tokens=16, repeats=1)
    assert [row.attention_len for row in rows] == [8, 16]
    assert all(row.vanilla_seconds > 0 and row.xl_seconds > 0 for row in rows)
    assert "speed-up" in format_speed_table(rows)


def test_relative_score_inputs_feed_the_blocks_as_forward_does():
    from course_lib.models.transformer_xl import TransformerXLConfig as Config
    from course_lib.models.transformer_xl import TransformerXLModel as Model
    from course_lib.models.transformer_xl_memory import attention_mask_with_memory

    torch.manual_seed(0)
    model = Model(Config(vocab_size=11, n_layers=2, n_heads=2, dim=8, head_dim=4, hidden_dim=16, segment_len=3,
                         mem_len=3)).eval()
    ids = torch.randint(11, (1, 3))
    inputs = model.relative_score_inputs(3)
    assert set(inputs) == {"positions", "u", "v"} and inputs["positions"].shape == (3, 8)
    hidden = model.token_embedding(ids) * model.embedding_scale
    allowed = attention_mask_with_memory(3, 0, 3)
    with torch.no_grad():
        for block in model.blocks:
            hidden, _ = block(hidden, allowed, **inputs)
        assert torch.allclose(hidden, model(ids).hidden_states[-1], atol=1e-6)
    absolute = Model(Config(vocab_size=11, n_layers=1, n_heads=2, dim=8, head_dim=4, hidden_dim=16,
                            relative_positions=False))
    with pytest.raises(ValueError, match="absolute"):
        absolute.relative_score_inputs(3)

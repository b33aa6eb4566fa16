"""GPT-1/GPT-2: configs and sizes, causal LM, generation, classification and GPT-1's task formats."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from course_lib.models.generation import generate, top_k_filter, top_p_filter
from course_lib.models.gpt import GPT, GPTConfig, GPTForSequenceClassification
from course_lib.training.losses import next_token_loss, shift_labels
from course_lib.models.gpt_heads import LM_WEIGHT, GPTForMultipleChoice, GPTForSimilarity
from course_lib.models.sizes import count_parameters
from course_lib.text.task_formats import (
    TaskTokens,
    classification_input,
    entailment_input,
    multiple_choice_inputs,
    pad_batch,
    similarity_inputs,
)

TOLERANCE = dict(atol=1e-5, rtol=1e-5)


def tiny_config(**changes) -> GPTConfig:
    settings = dict(vocab_size=61, context_length=24, dim=16, n_layers=2, n_heads=2, dropout=0.0, attn_dropout=0.0)
    settings.update(changes)
    return GPTConfig(**settings)


@pytest.fixture(params=["gpt1", "gpt2"])
def model(request):
    torch.manual_seed(0)
    pre_norm = request.param == "gpt2"
    return GPT(tiny_config(pre_norm=pre_norm, final_norm=pre_norm)).eval()


# --- configs and sizes ----------------------------------------------------------------------------------------------

# (preset, published size in millions, significant figures it is published with)
PUBLISHED_SIZES = [
    (GPTConfig.gpt1, 117, 3),  # Radford et al. 2018 / the openai-gpt model card
    (GPTConfig.gpt2_124m, 124, 3),
    (GPTConfig.gpt2_355m, 355, 3),
    (GPTConfig.gpt2_774m, 774, 3),
    (GPTConfig.gpt2_1558m, 1558, 4),
]


@pytest.mark.parametrize("preset, millions, figures", PUBLISHED_SIZES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_parameter_count_matches_published(preset, millions, figures):
    count = count_parameters(GPT, preset())  # built on the meta device: no memory for the weights
    assert float(f"{count:.{figures}g}") == millions * 1e6, f"{preset.__name__}: {count:,} parameters"


def test_gpt1_and_gpt2_presets():
    gpt1, gpt2 = GPTConfig.gpt1(), GPTConfig.gpt2_124m()
    assert (gpt1.vocab_size, gpt1.context_length, gpt1.pre_norm, gpt1.final_norm) == (40478, 512, False, False)
    assert (gpt2.vocab_size, gpt2.context_length, gpt2.pre_norm, gpt2.final_norm) == (50257, 1024, True, True)
    assert gpt2.hidden_dim == 4 * 768
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(dim=10, n_heads=3)


def test_tied_head_and_gpt2_residual_init():
    torch.manual_seed(0)
    model = GPT(tiny_config(dim=64, n_layers=8, n_heads=4))
    assert model.lm_head.weight is model.transformer.token_embedding.weight
    residual = torch.cat([b.attn.output.weight.flatten() for b in model.transformer.blocks])
    plain = torch.cat([b.attn.query.weight.flatten() for b in model.transformer.blocks])
    assert residual.std().item() == pytest.approx(0.02 / 4, rel=0.1)  # 0.02 / sqrt(2 * 8)
    assert plain.std().item() == pytest.approx(0.02, rel=0.1)


# --- the language model ---------------------------------------------------------------------------------------------


def test_forward_shapes_hidden_states_and_attentions(model):
    input_ids = torch.randint(0, 61, (3, 7))
    out = model(input_ids, output_attentions=True)
    assert out.logits.shape == (3, 7, 61)
    assert len(out.hidden_states) == 3 and all(h.shape == (3, 7, 16) for h in out.hidden_states)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (3, 2, 7, 7)
    assert model(input_ids).attentions is None
    torch.testing.assert_close(out.logits, model.lm_head(out.hidden_states[-1]))


def test_future_tokens_do_not_change_past_logits(model):
    input_ids = torch.randint(0, 61, (1, 9))
    changed = input_ids.clone()
    changed[0, 6:] = (changed[0, 6:] + 1) % 61
    before, after = model(input_ids).logits, model(changed).logits
    torch.testing.assert_close(before[:, :6], after[:, :6], **TOLERANCE)
    assert not torch.allclose(before[:, 6:], after[:, 6:])


def test_right_padding_leaves_real_tokens_unchanged(model):
    short = torch.randint(1, 61, (1, 5))
    padded = torch.cat([short, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0]])
    torch.testing.assert_close(model(padded, attention_mask=mask).logits[:, :5], model(short).logits, **TOLERANCE)


def test_loss_is_next_token_cross_entropy(model):
    input_ids = torch.randint(0, 61, (2, 6))
    out = model(input_ids, labels=input_ids)
    expected = F.cross_entropy(out.logits[:, :-1].reshape(-1, 61), input_ids[:, 1:].reshape(-1))
    torch.testing.assert_close(out.loss, expected)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    masked = next_token_loss(out.logits[:, :-1], shift_labels(input_ids, mask))
    kept = torch.cat([out.logits[0, :5], out.logits[1, :2]])
    torch.testing.assert_close(masked, F.cross_entropy(kept, torch.cat([input_ids[0, 1:], input_ids[1, 1:3]])))


def test_bad_inputs_raise_value_errors(model):
    with pytest.raises(ValueError, match="integer token ids"):
        model(torch.rand(1, 4))
    with pytest.raises(ValueError, match="rank 2"):
        model(torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="rank 2"):
        model(torch.ones(1, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="longer than the context of 24 positions"):
        model(torch.ones(1, 25, dtype=torch.long))
    with pytest.raises(ValueError, match=r"outside the vocabulary \[0, 61\)"):
        model(torch.tensor([[1, 61]]))
    with pytest.raises(ValueError, match="attention_mask has shape"):
        model(torch.ones(2, 4, dtype=torch.long), attention_mask=torch.ones(2, 5))


def test_a_few_steps_fit_a_tiny_batch():
    torch.manual_seed(0)
    model = GPT(tiny_config())
    batch = torch.randint(0, 61, (4, 12))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = model(batch, labels=batch).loss.item()
    for _ in range(30):
        loss = model(batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * first


# --- generation -----------------------------------------------------------------------------------------------------


def test_greedy_generation_takes_the_argmax_each_step(model):
    prompt = torch.tensor([[3, 14, 15]])
    out = generate(model, prompt, max_new_tokens=5)
    sequence = prompt
    for _ in range(5):
        next_token = model(sequence).logits[:, -1].argmax(-1, keepdim=True)
        sequence = torch.cat([sequence, next_token], dim=1)
    assert torch.equal(out, sequence)


def test_sampling_is_seeded_and_filters_work(model):
    prompt = torch.tensor([[3, 14, 15], [9, 2, 6]])
    first = generate(model, prompt, 8, do_sample=True, temperature=2.0, seed=1)
    assert torch.equal(first, generate(model, prompt, 8, do_sample=True, temperature=2.0, seed=1))
    assert not torch.equal(first, generate(model, prompt, 8, do_sample=True, temperature=2.0, seed=2))
    greedy = generate(model, prompt, 8)
    assert torch.equal(generate(model, prompt, 8, do_sample=True, top_k=1, seed=3), greedy)
    assert torch.equal(generate(model, prompt, 8, do_sample=True, top_p=1e-6, seed=3), greedy)


def test_generation_crops_to_the_context_and_stops_at_eos(model):
    long = generate(model, torch.randint(0, 61, (1, 20)), max_new_tokens=10)  # passes context_length=24
    assert long.shape == (1, 30)
    prompt = torch.tensor([[3, 14, 15]])
    eos = int(generate(model, prompt, 1)[0, -1])  # the first greedy token, used as "end of sequence"
    stopped = generate(model, prompt, 6, eos_token_id=eos)
    assert stopped.shape == (1, 4) and stopped[0, -1] == eos
    with pytest.raises(ValueError, match="temperature"):
        generate(model, prompt, 2, do_sample=True, temperature=0.0)


def test_top_k_and_top_p_filters():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(top_k_filter(logits, 2)).tolist() == [[False, False, True, True]]
    assert torch.isinf(top_p_filter(logits, 0.75)).tolist() == [[False, False, True, True]]  # 0.5 + 0.3 >= 0.75
    assert torch.isinf(top_p_filter(logits, 0.85)).tolist() == [[False, False, False, True]]
    assert torch.isinf(top_p_filter(logits, 0.4)).tolist() == [[False, True, True, True]]
    shuffled = logits[:, [2, 0, 3, 1]]
    assert torch.isinf(top_p_filter(shuffled, 0.75)).tolist() == [[True, False, True, False]]
    with pytest.raises(ValueError, match="top_p"):
        top_p_filter(logits, 0.0)


# --- fine-tuning heads and GPT-1's task formats ---------------------------------------------------------------------

TOKENS = TaskTokens(start=58, delimiter=59, extract=60, pad=0)


def test_task_input_formats_follow_figure_1():
    assert classification_input([5, 6], TOKENS) == [58, 5, 6, 60]
    assert entailment_input([5, 6], [7], TOKENS) == [58, 5, 6, 59, 7, 60]
    assert similarity_inputs([5], [7, 8], TOKENS) == ([58, 5, 59, 7, 8, 60], [58, 7, 8, 59, 5, 60])
    assert multiple_choice_inputs([5], [[7], [8, 9]], TOKENS) == [[58, 5, 59, 7, 60], [58, 5, 59, 8, 9, 60]]
    ids, mask = pad_batch([[1, 2, 3], [4]], pad_id=0)
    assert ids.tolist() == [[1, 2, 3], [4, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_classifier_reads_the_last_real_token_and_adds_the_lm_loss():
    torch.manual_seed(0)
    model = GPTForSequenceClassification(tiny_config(pre_norm=False, final_norm=False), n_classes=3,
                                         lm_weight=LM_WEIGHT).eval()
    ids, mask = pad_batch([classification_input([5, 6, 7], TOKENS), classification_input([9], TOKENS)], pad_id=0)
    labels = torch.tensor([2, 0])
    out = model(ids, mask, labels=labels)
    assert out.logits.shape == (2, 3)
    alone = model(torch.tensor([classification_input([9], TOKENS)]))
    torch.testing.assert_close(out.logits[1], alone.logits[0], **TOLERANCE)
    lm_logits = model.gpt(ids, mask).logits
    expected = F.cross_entropy(out.logits, labels) + 0.5 * next_token_loss(lm_logits[:, :-1], shift_labels(ids, mask))
    torch.testing.assert_close(out.loss, expected, **TOLERANCE)


def test_similarity_does_not_depend_on_sentence_order():
    torch.manual_seed(0)
    model = GPTForSimilarity(tiny_config(), n_classes=2).eval()
    a, b = [5, 6, 7], [9, 10]
    ab, ba = similarity_inputs(a, b, TOKENS)
    first = model(torch.tensor([ab]), None, torch.tensor([ba]), None)
    swapped = model(torch.tensor([ba]), None, torch.tensor([ab]), None)
    torch.testing.assert_close(first.logits, swapped.logits, **TOLERANCE)
    feature_sum = model.features(torch.tensor([ab]))[0] + model.features(torch.tensor([ba]))[0]
    torch.testing.assert_close(first.logits, model.classifier(feature_sum), **TOLERANCE)


def test_multiple_choice_is_a_softmax_over_candidates():
    torch.manual_seed(0)
    model = GPTForMultipleChoice(tiny_config()).eval()
    candidates = multiple_choice_inputs([5, 6], [[7], [8, 9], [10, 11, 12]], TOKENS)
    ids, mask = pad_batch(candidates, pad_id=0)
    ids, mask = ids[None], mask[None]  # [batch=1, choices=3, tokens]
    out = model(ids, mask, labels=torch.tensor([1]))
    assert out.logits.shape == (1, 3)
    torch.testing.assert_close(out.loss, -torch.log_softmax(out.logits, dim=-1)[0, 1])
    reordered = model(ids[:, [2, 0, 1]], mask[:, [2, 0, 1]])
    torch.testing.assert_close(reordered.logits, out.logits[:, [2, 0, 1]], **TOLERANCE)
    with pytest.raises(ValueError, match="rank 3"):
        model(ids[0])

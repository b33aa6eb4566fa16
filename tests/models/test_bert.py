"""BERT: configs and sizes, bidirectional encoder, segments, pooler, MLM/NSP heads and the classifier."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from course_lib.models.bert import (
    BertConfig,
    BertForMaskedLM,
    BertForPreTraining,
    BertForSequenceClassification,
    BertModel,
)
from course_lib.models.sizes import count_parameters

TOLERANCE = dict(atol=1e-5, rtol=1e-5)


def tiny_config(**changes) -> BertConfig:
    settings = dict(vocab_size=50, context_length=16, dim=16, n_layers=2, n_heads=2, hidden_dim=32,
                    dropout=0.0, attn_dropout=0.0)
    settings.update(changes)
    return BertConfig(**settings)


@pytest.fixture
def bert():
    torch.manual_seed(0)
    return BertModel(tiny_config()).eval()


@pytest.mark.parametrize("preset, millions", [(BertConfig.base, 110), (BertConfig.large, 340)], ids=["base", "large"])
def test_parameter_count_matches_published(preset, millions):
    count = count_parameters(BertModel, preset())  # meta device: nothing allocated
    assert float(f"{count:.2g}") == millions * 1e6, f"{preset.__name__}: {count:,} parameters"


def test_presets_match_the_papers():
    rows = [(c.n_layers, c.dim, c.n_heads, c.hidden_dim) for c in (BertConfig.base(), BertConfig.large())]
    assert rows == [(12, 768, 12, 3072), (24, 1024, 16, 4096)]
    minilm = BertConfig.minilm()
    assert (minilm.n_layers, minilm.dim, minilm.n_heads, minilm.hidden_dim) == (6, 384, 12, 1536)


def test_outputs_hidden_states_pooled_and_attentions(bert):
    input_ids = torch.randint(0, 50, (3, 7))
    out = bert(input_ids, output_attentions=True)
    assert len(out.hidden_states) == 3 and all(h.shape == (3, 7, 16) for h in out.hidden_states)
    assert out.pooled.shape == (3, 16) and out.logits is None
    assert len(out.attentions) == 2 and out.attentions[1].shape == (3, 2, 7, 7)
    torch.testing.assert_close(out.pooled, torch.tanh(bert.pooler.dense(out.hidden_states[-1][:, 0])))
    fused = bert(input_ids)
    assert fused.attentions is None
    torch.testing.assert_close(fused.hidden_states[-1], out.hidden_states[-1], **TOLERANCE)


def test_every_token_sees_both_directions(bert):
    input_ids = torch.randint(0, 50, (1, 8))
    changed = input_ids.clone()
    changed[0, -1] = (changed[0, -1] + 1) % 50
    before, after = bert(input_ids).hidden_states[-1], bert(changed).hidden_states[-1]
    assert not torch.allclose(before[0, 0], after[0, 0]), "the first token must see a change at the end"


def test_embeddings_are_token_plus_segment_plus_position(bert):
    input_ids = torch.tensor([[4, 9, 2]])
    segments = torch.tensor([[0, 1, 1]])
    emb = bert.embeddings
    expected = emb.layer_norm(emb.token.weight[input_ids] + emb.segment.weight[segments] + emb.position.weight[:3])
    torch.testing.assert_close(bert(input_ids, token_type_ids=segments).hidden_states[0], expected)
    all_sentence_a = bert(input_ids).hidden_states[-1]
    assert not torch.allclose(all_sentence_a, bert(input_ids, token_type_ids=segments).hidden_states[-1])


def test_padding_leaves_real_tokens_unchanged(bert):
    short = torch.randint(1, 50, (1, 5))
    padded = torch.cat([short, torch.zeros(1, 2, dtype=torch.long)], dim=1)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0]])
    for output_attentions in (False, True):
        with_padding = bert(padded, attention_mask=mask, output_attentions=output_attentions)
        torch.testing.assert_close(with_padding.hidden_states[-1][:, :5], bert(short).hidden_states[-1], **TOLERANCE)
    assert torch.all(with_padding.attentions[0][..., 5:] == 0)


def test_bad_inputs_raise_value_errors(bert):
    ids = torch.ones(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="integer token ids"):
        bert(ids.float())
    with pytest.raises(ValueError, match="rank 2"):
        bert(ids[0])
    with pytest.raises(ValueError, match="longer than the context of 16 positions"):
        bert(torch.ones(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match=r"id 50, outside the vocabulary \[0, 50\)"):
        bert(torch.tensor([[1, 50]]))
    with pytest.raises(ValueError, match=r"token_type_ids holds id 2"):
        bert(ids, token_type_ids=torch.full_like(ids, 2))
    with pytest.raises(ValueError, match="token_type_ids has shape"):
        bert(ids, token_type_ids=torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask has shape"):
        bert(ids, attention_mask=torch.ones(2, 3))


def test_pretraining_heads_and_loss():
    torch.manual_seed(0)
    model = BertForPreTraining(tiny_config()).eval()
    assert model.mlm.decoder.weight is model.bert.embeddings.token.weight  # tied
    input_ids = torch.randint(0, 50, (2, 6))
    mlm_labels = torch.full_like(input_ids, -100)
    mlm_labels[0, 2], mlm_labels[1, 4] = 7, 11  # two masked positions
    nsp_labels = torch.tensor([0, 1])
    out = model(input_ids, mlm_labels=mlm_labels, next_sentence_labels=nsp_labels)
    assert out.logits.shape == (2, 6, 50) and out.next_sentence_logits.shape == (2, 2)
    mlm = F.cross_entropy(torch.stack([out.logits[0, 2], out.logits[1, 4]]), torch.tensor([7, 11]))
    nsp = F.cross_entropy(out.next_sentence_logits, nsp_labels)
    torch.testing.assert_close(out.loss, mlm + nsp)
    assert model(input_ids).loss is None


def test_masked_lm_has_no_pooler_and_classifier_uses_pooled():
    torch.manual_seed(0)
    mlm = BertForMaskedLM(tiny_config()).eval()
    assert mlm.bert.pooler is None
    input_ids = torch.randint(0, 50, (2, 5))
    labels = torch.full_like(input_ids, -100)
    labels[:, 1] = 3
    out = mlm(input_ids, labels=labels)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits[:, 1], torch.tensor([3, 3])))
    classifier = BertForSequenceClassification(tiny_config(), n_classes=4).eval()
    out = classifier(input_ids, labels=torch.tensor([0, 3]))
    assert out.logits.shape == (2, 4)
    torch.testing.assert_close(out.logits, classifier.classifier(out.pooled))
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, torch.tensor([0, 3])))


def test_a_few_steps_fit_a_tiny_classification_batch():
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config(), n_classes=2)
    input_ids = torch.randint(0, 50, (8, 6))
    labels = torch.tensor([0, 1] * 4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = model(input_ids, labels=labels).loss.item()
    for _ in range(25):
        loss = model(input_ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * first

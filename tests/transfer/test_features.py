"""Feature extraction: cached per-layer [CLS] vectors, the paper's layer combinations, and a linear probe."""

import pytest
import torch

from course_lib.models.bert import BertConfig, BertForSequenceClassification, BertModel
from course_lib.transfer import combine_layers, extract_features, feature_batches, train_probe


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, context_length=16, dim=8, n_layers=5, n_heads=2, hidden_dim=16)
    ids = torch.randint(5, 50, (12, 6))
    batches = [{"input_ids": ids[i : i + 4], "attention_mask": torch.ones(4, 6, dtype=torch.long),
                "labels": torch.arange(i, i + 4) % 2} for i in range(0, 12, 4)]
    return config, BertModel(config), batches


def test_features_are_the_cls_vectors_of_every_layer(tiny):
    config, body, batches = tiny
    body.train()
    features, labels = extract_features(body, batches)
    assert features.shape == (12, config.n_layers + 1, config.dim) and labels.tolist() == [0, 1] * 6
    assert body.training, "extract_features must restore the training flag"
    with torch.no_grad():
        body.eval()
        expected = body(batches[1]["input_ids"]).hidden_states[3][:, 0]
    torch.testing.assert_close(features[4:8, 3], expected)
    pooled, _ = extract_features(body, batches, pooled=True)
    assert pooled.shape == (12, config.dim)


def test_layer_combinations_by_hand():
    features = torch.arange(2 * 6 * 3, dtype=torch.float).view(2, 6, 3)  # 5 layers + embeddings
    torch.testing.assert_close(combine_layers(features, "last"), features[:, 5])
    torch.testing.assert_close(combine_layers(features, "second_to_last"), features[:, 4])
    torch.testing.assert_close(combine_layers(features, "sum_all"), features[:, 1:].sum(1))
    torch.testing.assert_close(combine_layers(features, "sum_last_four"), features[:, 2:].sum(1))
    torch.testing.assert_close(combine_layers(features, "concat_last_four"), features[:, 2:].reshape(2, 12))
    with pytest.raises(ValueError, match="how must be one of"):
        combine_layers(features, "mean")
    with pytest.raises(ValueError, match="per-layer features"):
        combine_layers(features[:, 0], "last")


def test_probe_learns_a_separable_problem_and_matches_the_frozen_classifier(tiny):
    torch.manual_seed(0)
    features = torch.randn(64, 4)
    labels = (features[:, 0] > 0).long()
    probe, history = train_probe(features, labels, epochs=30, lr=0.1)
    accuracy = (probe(features).logits.argmax(-1) == labels).float().mean()
    assert accuracy > 0.95 and history.loss[-1] < history.loss[0]
    assert len(feature_batches(features, labels, batch_size=10)) == 7
    # A frozen classifier's logits are the probe's logits on the pooled features.
    config, body, batches = tiny
    classifier = BertForSequenceClassification(config, 2).eval()
    classifier.bert.load_state_dict(body.state_dict())
    pooled, _ = extract_features(classifier.bert, batches, pooled=True)
    with torch.no_grad():
        expected = classifier(batches[0]["input_ids"], batches[0]["attention_mask"]).logits
    torch.testing.assert_close(classifier.classifier(pooled[:4]), expected)


def test_layer_features_hold_both_readouts_of_every_layer_and_ignore_padding(tiny):
    from course_lib.transfer.features import extract_layer_features, mean_over_tokens

    config, body, batches = tiny
    padded = [dict(b) for b in batches]
    padded[0]["attention_mask"] = torch.tensor([[1, 1, 1, 0, 0, 0]] * 4)  # first batch: 3 real tokens, 3 padding
    body.train()
    features = extract_layer_features(body, padded)
    assert body.training, "extract_layer_features must restore the training flag"
    assert features.cls.shape == features.mean.shape == (12, config.n_layers + 1, config.dim)
    cls, labels = extract_features(body, padded)
    torch.testing.assert_close(features.cls, cls)
    assert features.labels.tolist() == labels.tolist()
    body.eval()
    with torch.no_grad():
        hidden = body(padded[0]["input_ids"], padded[0]["attention_mask"]).hidden_states[2]  # [4, 6, dim]
    torch.testing.assert_close(features.mean[:4, 2], hidden[:, :3].mean(1))  # the padding is not averaged in
    subset = features[[1, 5]]
    torch.testing.assert_close(subset.mean, features.mean[[1, 5]])
    assert subset.labels.tolist() == [features.labels[1].item(), features.labels[5].item()]
    torch.testing.assert_close(mean_over_tokens(torch.ones(1, 2, 3), torch.zeros(1, 2)), torch.zeros(1, 3))


def test_probe_trains_on_one_thread_and_restores_the_thread_count():
    from course_lib.transfer.features import one_cpu_thread

    before = torch.get_num_threads()
    with one_cpu_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), one_cpu_thread():
        raise RuntimeError("restored even after an error")
    assert torch.get_num_threads() == before
    features, labels = torch.randn(16, 3), torch.arange(16) % 2
    train_probe(features, labels, epochs=2)
    assert torch.get_num_threads() == before

"""The baselines that transfer-learning numbers are read against."""

import pytest
import torch

from course_lib.text.spam import load_spam
from course_lib.training.baselines import BagOfWordsClassifier, majority_baseline, words
from course_lib.training.metrics import binary_metrics


def test_words_has_unigrams_and_bigrams():
    assert words("FREE entry now!") == ["free", "entry", "now", "!", "free entry", "entry now", "now !"]


def test_bag_of_words_separates_a_toy_problem():
    texts = ["win cash now", "free prize win", "see you later", "dinner later ok"] * 3
    labels = [1, 1, 0, 0] * 3
    clf = BagOfWordsClassifier().fit(texts, labels)
    assert clf.predict(["claim your cash prize", "ok see you at dinner"]).tolist() == [1, 0]
    with pytest.raises(ValueError, match="call fit"):
        BagOfWordsClassifier().predict(["x"])


def test_bag_of_words_on_200_spam_labels_beats_always_ham():
    train, test = load_spam("train").sample(200, seed=0), load_spam("test")
    scores = binary_metrics(test.labels, BagOfWordsClassifier().fit(train.texts, train.labels).predict(test.texts))
    always_ham = binary_metrics(test.labels, majority_baseline(train.labels, len(test)))
    assert always_ham.f1 == 0.0 and always_ham.accuracy == pytest.approx(795 / 907)
    assert scores.f1 > 0.8 and scores.accuracy > always_ham.accuracy
    assert majority_baseline([0, 0, 1], 2).tolist() == [0, 0]
    assert isinstance(majority_baseline([1], 1), torch.Tensor)

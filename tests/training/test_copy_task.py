"""The copy task of notebook 04: periodic patterns, training with recurrence, accuracy by position."""

import torch

from course_lib.models.transformer_xl import TransformerXLConfig
from course_lib.training.copy_task import (
    accuracy_by_position,
    repeated_patterns,
    train_in_segments,
)


def test_repeated_patterns_repeat_with_the_period():
    rows = repeated_patterns(3, period=5, vocab_size=7, length=23, generator=torch.Generator().manual_seed(0))
    assert rows.shape == (3, 23)
    assert int(rows.max()) < 7
    assert torch.equal(rows[:, 5:], rows[:, :-5])


def test_same_seed_same_model_and_threads_restored():
    config = TransformerXLConfig(vocab_size=8, n_layers=1, n_heads=1, dim=8, head_dim=8, hidden_dim=16, dropout=0.0,
                                 segment_len=4, mem_len=4)
    batch = lambda generator: repeated_patterns(2, 5, 8, 13, generator)
    threads = torch.get_num_threads()
    first = train_in_segments(config, batch, steps=3)
    second = train_in_segments(config, batch, steps=3)
    assert torch.get_num_threads() == threads
    assert not first.training
    for a, b in zip(first.parameters(), second.parameters()):
        assert torch.equal(a, b)


def test_accuracy_by_position_one_value_per_segment_position():
    config = TransformerXLConfig(vocab_size=8, n_layers=1, n_heads=1, dim=8, head_dim=8, hidden_dim=16, dropout=0.0,
                                 segment_len=4, mem_len=4)
    model = train_in_segments(config, lambda g: repeated_patterns(2, 5, 8, 13, g), steps=1)
    sequences = repeated_patterns(6, 5, 8, 13, torch.Generator().manual_seed(1))
    accuracy = accuracy_by_position(model, sequences, last_segments=2)
    assert accuracy.shape == (4,)
    assert ((accuracy >= 0) & (accuracy <= 1)).all()

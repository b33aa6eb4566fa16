"""The one next-token loss: its convention (targets already aligned), padding, and every model that uses it."""

import pytest
import torch
import torch.nn.functional as F

from course_lib.models.elmo import ElmoBiLM, ElmoConfig
from course_lib.models.gpt import GPT, GPTConfig
from course_lib.training.losses import IGNORE_INDEX, next_token_loss, shift_labels, window_loss


def test_next_token_loss_is_the_mean_cross_entropy_of_aligned_targets():
    logits = torch.randn(2, 5, 7, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([[1, 2, 3, 4, 5], [6, 0, IGNORE_INDEX, 1, IGNORE_INDEX]])
    kept = targets != IGNORE_INDEX
    by_hand = -torch.log_softmax(logits, -1)[kept].gather(-1, targets[kept][:, None]).mean()
    torch.testing.assert_close(next_token_loss(logits, targets), by_hand)
    torch.testing.assert_close(next_token_loss(logits, targets, reduction="sum"), by_hand * kept.sum())
    with pytest.raises(ValueError, match="targets\\[:, i\\] is the token that follows input i"):
        next_token_loss(logits, targets[:, 1:])  # unshifted labels of the wrong length are refused


def test_shift_labels_moves_left_and_hides_padding():
    labels = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    assert shift_labels(labels).tolist() == [[6, 7, 8], [10, 0, 0]]
    assert shift_labels(labels, mask).tolist() == [[6, 7, 8], [10, IGNORE_INDEX, IGNORE_INDEX]]


def test_gpt_and_elmo_losses_are_this_loss():
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=50, context_length=16, dim=16, n_layers=1, n_heads=2)).eval()
    ids = torch.randint(50, (3, 9))
    mask = torch.ones_like(ids)
    mask[2, 6:] = 0
    out = gpt(ids, attention_mask=mask, labels=ids)
    torch.testing.assert_close(out.loss, next_token_loss(out.logits[:, :-1], shift_labels(ids, mask)))

    elmo = ElmoBiLM(ElmoConfig(vocab_size=50, dim=8, hidden_size=16, num_layers=1)).eval()
    out = elmo(ids, mask=mask.bool())
    keep_forward, keep_backward = mask.bool()[:, 1:], mask.bool()[:, :-1] & mask.bool()[:, 1:]
    forward = F.cross_entropy(out.logits[0][:, :-1][keep_forward], ids[:, 1:][keep_forward])
    backward = F.cross_entropy(out.logits[1][:, 1:][keep_backward], ids[:, :-1][keep_backward])
    torch.testing.assert_close(out.loss, forward + backward)


def test_window_loss_reads_whole_windows_in_batches():
    torch.manual_seed(1)
    gpt = GPT(GPTConfig(vocab_size=30, context_length=8, dim=16, n_layers=1, n_heads=2))
    ids = torch.randint(30, (8 * 5 + 3,))
    windows = ids[:41].unfold(0, 9, 8)  # 5 windows of 8 inputs + their next token
    expected = gpt.eval()(windows[:, :-1], labels=None).logits
    by_hand = F.cross_entropy(expected.flatten(0, 1), windows[:, 1:].flatten()).item()
    gpt.train()
    assert window_loss(gpt, ids, 8, batch=2) == pytest.approx(by_hand, rel=1e-5)
    assert gpt.training, "window_loss puts the model back in the mode it found it in"
    with pytest.raises(ValueError, match="fewer than one window"):
        window_loss(gpt, ids[:8], 8)

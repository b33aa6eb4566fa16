"""ELMo's biLM: each direction sees only its side, padding is harmless, the joint loss, the embedder, bad input."""

import pytest
import torch
import torch.nn.functional as F

from course_lib.blocks.lstm_lm import reverse_padded
from course_lib.models.elmo import ElmoBiLM, ElmoConfig, ElmoEmbedder

CONFIG = ElmoConfig(vocab_size=30, dim=8, hidden_size=12, num_layers=2, dropout=0.0)


def _model(seed: int = 0) -> ElmoBiLM:
    torch.manual_seed(seed)
    return ElmoBiLM(CONFIG).eval()


def _directions(model, input_ids, lengths=None):
    """Per layer: (forward half, backward half) of the [forward; backward] states."""
    states = model(input_ids, lengths=lengths, compute_loss=False).hidden_states[1:]
    return [(h[..., :CONFIG.dim], h[..., CONFIG.dim:]) for h in states]


def test_forward_lm_never_sees_right_and_backward_never_sees_left():
    model = _model()
    torch.manual_seed(1)
    input_ids = torch.randint(1, CONFIG.vocab_size, (2, 9))
    changed = input_ids.clone()
    k = 4
    changed[:, k] = (changed[:, k] % (CONFIG.vocab_size - 1)) + 1  # a different token at position k
    with torch.no_grad():
        before, after = _directions(model, input_ids), _directions(model, changed)
    for (forward_before, backward_before), (forward_after, backward_after) in zip(before, after, strict=True):
        forward_diff = (forward_before - forward_after).abs().amax(dim=(0, 2))  # [tokens]
        backward_diff = (backward_before - backward_after).abs().amax(dim=(0, 2))
        assert torch.all(forward_diff[:k] == 0), "the forward LM saw a token to its right"
        assert torch.all(forward_diff[k:] > 0), "the forward LM ignored a token to its left"
        assert torch.all(backward_diff[k + 1:] == 0), "the backward LM saw a token to its left"
        assert torch.all(backward_diff[:k + 1] > 0), "the backward LM ignored a token to its right"


def test_padding_changes_nothing():
    model = _model()
    torch.manual_seed(2)
    long, short = torch.randint(1, CONFIG.vocab_size, (7,)), torch.randint(1, CONFIG.vocab_size, (4,))
    batch = torch.zeros(2, 7, dtype=torch.long)
    batch[0], batch[1, :4] = long, short
    with torch.no_grad():
        batched = model(batch, lengths=torch.tensor([7, 4]), compute_loss=False).hidden_states
        alone = model(short[None], compute_loss=False).hidden_states
    for layer_batched, layer_alone in zip(batched, alone, strict=True):
        torch.testing.assert_close(layer_batched[1, :4], layer_alone[0], atol=1e-6, rtol=1e-5)
        assert torch.all(layer_batched[1, 4:] == 0)


def test_reverse_padded_reverses_within_each_length():
    sequence = torch.tensor([[1, 2, 3, 4], [5, 6, 0, 0]])
    reversed_ = reverse_padded(sequence, torch.tensor([4, 2]))
    assert reversed_.tolist() == [[4, 3, 2, 1], [6, 5, 0, 0]]
    assert torch.equal(reverse_padded(reversed_, torch.tensor([4, 2])), sequence)


def test_joint_loss_is_the_sum_of_both_directions():
    model = _model()
    torch.manual_seed(3)
    input_ids = torch.randint(1, CONFIG.vocab_size, (2, 6))
    lengths = torch.tensor([6, 4])
    output = model(input_ids, lengths=lengths)
    log_probs = F.log_softmax(output.logits, dim=-1)  # [2, batch, tokens, vocab]
    forward_terms, backward_terms = [], []
    for b, n in enumerate(lengths.tolist()):
        for k in range(n - 1):
            forward_terms.append(-log_probs[0, b, k, input_ids[b, k + 1]])  # p(t_{k+1} | t_1..t_k)
            backward_terms.append(-log_probs[1, b, k + 1, input_ids[b, k]])  # p(t_k | t_{k+1}..t_N)
    expected = torch.stack(forward_terms).mean() + torch.stack(backward_terms).mean()
    torch.testing.assert_close(output.loss, expected)


def test_embedding_and_softmax_are_shared_by_both_directions():
    model = _model()
    names = [name for name, _ in model.named_parameters()]
    assert sum(name.startswith("token_embedding") for name in names) == 1
    assert sum(name.startswith("softmax") for name in names) == 2  # one weight, one bias
    # the backward direction alone trains the shared softmax and embedding
    input_ids = torch.randint(1, CONFIG.vocab_size, (1, 5))
    logits = model(input_ids, compute_loss=False).logits
    F.cross_entropy(logits[1, :, 1:].flatten(0, 1), input_ids[:, :-1].flatten()).backward()
    assert model.softmax.weight.grad.abs().sum() > 0 and model.token_embedding.weight.grad.abs().sum() > 0
    assert all(p.grad is None or not p.grad.any() for p in model.forward_lm.parameters())


def test_embedder_returns_every_layer_and_the_mix():
    model = _model()
    embedder = ElmoEmbedder(model, do_layer_norm=False)
    with torch.no_grad():
        embedder.scalar_mix.layer_weights.copy_(torch.tensor([0.1, 0.2, 0.3]))
        embedder.scalar_mix.gamma.fill_(0.5)
    torch.manual_seed(4)
    input_ids = torch.randint(1, CONFIG.vocab_size, (3, 5))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]], dtype=torch.bool)
    with torch.no_grad():
        out = embedder(input_ids, mask=mask)
    assert out.layers.shape == (3, CONFIG.num_layers + 1, 5, 2 * CONFIG.dim)
    tokens = model.token_embedding(input_ids)
    torch.testing.assert_close(out.layers[:, 0], torch.cat([tokens, tokens], -1) * mask[..., None])
    s = torch.softmax(torch.tensor([0.1, 0.2, 0.3]), 0)
    expected = 0.5 * sum(s[j] * out.layers[:, j] for j in range(3))
    torch.testing.assert_close(out.mixed, expected)
    assert torch.all(out.mixed[~mask] == 0) and torch.equal(out.mask, mask)
    assert not any(p.requires_grad for p in model.parameters())  # the biLM is frozen; only the mix trains


def test_bad_input_says_what_is_wrong():
    model = _model()
    ids = torch.randint(1, CONFIG.vocab_size, (2, 4))
    with pytest.raises(ValueError, match=r"sentences \[1\] are empty"):
        model(ids, lengths=torch.tensor([4, 0]))
    with pytest.raises(ValueError, match="disagree with the mask"):
        model(ids, lengths=torch.tensor([4, 3]), mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask shape"):
        model(ids, mask=torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="batch has 2 sentences"):
        model(ids, lengths=torch.tensor([4, 4, 4]))
    with pytest.raises(ValueError, match="exceed the 4 tokens"):
        model(ids, lengths=torch.tensor([5, 4]))
    with pytest.raises(ValueError, match=r"rows \[0\] are not"):
        model(ids, mask=torch.tensor([[1, 0, 1, 1], [1, 1, 1, 1]], dtype=torch.bool))
    with pytest.raises(ValueError, match="empty batch"):
        model(torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 30\)"):
        model(torch.full((1, 3), 30))

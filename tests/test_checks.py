"""Every check passes its reference solution on drawn inputs and fails each known-wrong version with the right message.

The fine-tuning check has its own file (test_grading_finetune.py).
"""

from __future__ import annotations

import math
import time

import pytest
import torch

from course_lib.grading import Outcome, check
from course_lib.text.masking import mask_tokens


@pytest.fixture(autouse=True)
def feedback_mode(monkeypatch):
    """Feedback mode and no results file, whatever the surrounding test session sets."""
    monkeypatch.delenv("COURSE_STRICT", raising=False)
    monkeypatch.delenv("COURSE_RESULTS", raising=False)
    check.reset()


def expect(result, outcome, message=None, hint=None):
    """Assert the outcome, and that ``message`` / ``hint`` occur in the rendered result."""
    assert result.outcome is outcome, str(result)
    text = str(result)
    if message is not None:
        assert message in text, text
    if hint is not None:
        assert result.hint is not None and hint in result.hint, text


# --- scaled dot-product attention ---------------------------------------------------------------------------------

def attention(query, key, value, mask=None, *, scale=None, dim=-1, mask_mode="before", boolean=False):
    """The reference, with switches that reproduce the known mistakes."""
    scores = query @ key.transpose(-2, -1) / (math.sqrt(query.shape[-1]) if scale is None else scale)
    additive = None
    if mask is not None:
        additive = torch.zeros(mask.shape).masked_fill(~mask, float("-inf")) if boolean else mask
    if additive is not None and mask_mode == "before":
        scores = scores + additive
    if additive is not None and mask_mode == "minus":
        scores = scores - additive
    weights = scores.softmax(dim=dim)
    if additive is not None and mask_mode == "after_zero":
        weights = weights.masked_fill(additive == float("-inf"), 0.0)
    if additive is not None and mask_mode == "after_add":
        weights = weights + additive
    return weights @ value, weights


def test_attention_reference_passes_both_mask_styles():
    for seed in range(4):
        expect(check.scaled_dot_product_attention(attention, seed=seed), Outcome.PASSED, "match softmax")
    boolean = lambda q, k, v, mask=None: attention(q, k, v, mask, boolean=True)  # noqa: E731
    expect(check.scaled_dot_product_attention(boolean, mask_style="boolean"), Outcome.PASSED)

    def fused(query, key, value, mask=None):  # torch's fused kernel plus explicit weights: also right
        output = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask)
        return output, attention(query, key, value, mask)[1]

    expect(check.scaled_dot_product_attention(fused), Outcome.PASSED)


@pytest.mark.parametrize("mistake, message, hint", [
    (dict(scale=1.0), "looks like 'forgot sqrt(d_k)'", "divide the scores by sqrt(d_k)"),
    (dict(scale="d_k"), "looks like 'divided by d_k'", "not by d_k"),
    (dict(dim=-2), "looks like 'softmax over the queries'", "dim=-1"),
    (dict(mask_mode="ignored"), "(4-D with a mask) wrong weights: this looks like 'mask ignored'", "not applied"),
    (dict(mask_mode="after_zero"), "looks like 'mask after softmax (zeroed)'", "*before* the softmax"),
    (dict(mask_mode="after_add"), "looks like 'mask after softmax (added)'", "*before* the softmax"),
    (dict(mask_mode="minus"), "looks like 'mask with the wrong sign'", "you subtracted the mask"),
])
def test_attention_known_mistakes(mistake, message, hint):
    def wrong(q, k, v, mask=None):
        options = {**mistake, "scale": q.shape[-1]} if mistake.get("scale") == "d_k" else mistake
        return attention(q, k, v, mask, **options)

    expect(check.scaled_dot_product_attention(wrong), Outcome.FAILED, message, hint)


def test_attention_inverted_boolean_mask():
    inverted = lambda q, k, v, mask=None: attention(q, k, v, None if mask is None else ~mask, boolean=True)  # noqa
    expect(check.scaled_dot_product_attention(inverted, mask_style="boolean"), Outcome.FAILED,
           "looks like 'mask inverted'", "you hid the visible keys")


@pytest.mark.filterwarnings("ignore:The use of `x.T`:UserWarning")
def test_attention_shape_mistakes():
    def transposed_scores(query, key, value, mask=None):
        weights = (key @ query.transpose(-2, -1) / math.sqrt(query.shape[-1])).softmax(-1)
        return weights.transpose(-2, -1) @ value, weights

    def dot_t(query, key, value, mask=None):
        return attention(query, key.T, value)  # .T reverses every axis of a 3-D tensor

    expect(check.scaled_dot_product_attention(transposed_scores), Outcome.FAILED, "`weights` has the wrong shape",
           "not key @ query^T")
    expect(check.scaled_dot_product_attention(dot_t), Outcome.ERROR, "RuntimeError", "use `.transpose(-2, -1)`")
    expect(check.scaled_dot_product_attention(lambda q, k, v, mask=None: attention(q, k, v, mask)[::-1]),
           Outcome.FAILED, "swapped order")
    expect(check.scaled_dot_product_attention(lambda q, k, v, mask=None: attention(q, k, v, mask)[0]),
           Outcome.FAILED, "should be a list of two tensors, got torch.Tensor")
    expect(check.scaled_dot_product_attention(lambda q, k, v, mask=None: [t.tolist() for t in attention(q, k, v, mask)]),
           Outcome.FAILED, "`output` should be a torch.Tensor, got list")


def test_attention_wrong_output_with_right_weights():
    def forgot_value(query, key, value, mask=None):
        output, weights = attention(query, key, value, mask)
        return output * 2, weights

    expect(check.scaled_dot_product_attention(forgot_value), Outcome.FAILED,
           "`output` has the right shape but wrong values", "output = weights @ value")


def test_attention_none_nan_mutation_timeout_not_attempted_error():
    def stub(query, key, value, mask=None):
        # YOUR CODE HERE
        raise NotImplementedError()

    def forgot_return(query, key, value, mask=None):
        attention(query, key, value, mask)

    def nan(query, key, value, mask=None):
        output, weights = attention(query, key, value, mask)
        return output, weights * float("nan")

    def in_place(query, key, value, mask=None):
        query /= math.sqrt(query.shape[-1])
        return attention(query, key, value, mask, scale=1.0)

    def endless(query, key, value, mask=None):
        stop = time.monotonic() + 1
        while time.monotonic() < stop:
            pass
        return attention(query, key, value, mask)

    def typo(query, key, value, mask=None):
        scores = query @ key.transpose(-2, -1)
        return scores.softmaks(dim=-1)

    expect(check.scaled_dot_product_attention(stub), Outcome.NOT_ATTEMPTED, "still raises NotImplementedError")
    expect(check.scaled_dot_product_attention(forgot_return), Outcome.FAILED, "is None", "`return`")
    result = check.scaled_dot_product_attention(nan)
    expect(result, Outcome.FAILED, "(3-D, no mask)")
    assert "`weights` contains NaN" in str(result) and "this case has no mask" in result.hint
    assert "-inf *added*" not in result.hint  # not the mask hint for a case without a mask
    expect(check.scaled_dot_product_attention(in_place), Outcome.FAILED, "changed its input `query`: `query` changed at")
    expect(check.scaled_dot_product_attention(endless, time_limit=0.2), Outcome.TIMED_OUT, "took longer than 0.2 s")
    result = check.scaled_dot_product_attention(typo)
    expect(result, Outcome.ERROR, "AttributeError")
    assert result.student_line.endswith("in typo: return scores.softmaks(dim=-1)")


def test_attention_nan_only_with_a_mask_gets_the_mask_hint():
    def masked_nan(query, key, value, mask=None):
        output, weights = attention(query, key, value, mask)
        return output, weights if mask is None else weights * float("nan")

    result = check.scaled_dot_product_attention(masked_nan)
    expect(result, Outcome.FAILED, "(4-D with a mask)", "-inf *added*")


def test_attention_shapes_vary_between_calls():
    shapes = []

    def spy(query, key, value, mask=None):
        shapes.append((tuple(query.shape), tuple(key.shape), tuple(value.shape)))
        return attention(query, key, value, mask)

    for _ in range(3):
        expect(check.scaled_dot_product_attention(spy), Outcome.PASSED)
    assert len(set(shapes)) > 3
    assert all(q[-2] != k[-2] != v[-1] != q[-2] for q, k, v in shapes)  # queries, keys, d_v all different


def test_attention_usage_error_is_raised():
    with pytest.raises(ValueError, match="mask_style"):
        check.scaled_dot_product_attention(attention, mask_style="float")


# --- masked LM masking -------------------------------------------------------------------------------------------

def masking(input_ids, mask_token_id, vocab_size, special_ids, mlm_probability=0.15, generator=None, *,
            exclude_special=True, split=(0.8, 0.9), unlabelled=-100, labels_from="input", ignore_generator=False):
    """A masking function with switches that reproduce the known mistakes."""
    source_of_randomness = None if ignore_generator else generator
    rand = lambda shape: torch.rand(shape, generator=source_of_randomness)  # noqa: E731
    chosen = rand(input_ids.shape) < mlm_probability
    if exclude_special:
        chosen &= ~torch.isin(input_ids, torch.tensor(list(special_ids)))
    draw = rand(input_ids.shape)
    masked = input_ids.clone()
    masked[chosen & (draw < split[0])] = mask_token_id
    to_random = chosen & (draw >= split[0]) & (draw < split[1])
    masked[to_random] = torch.randint(vocab_size, input_ids.shape, generator=source_of_randomness)[to_random]
    source = masked if labels_from == "masked" else input_ids
    labels = torch.where(chosen, source, torch.full_like(input_ids, unlabelled))
    return masked, labels


def test_masking_reference_passes():
    for seed in range(3):
        expect(check.mlm_masking(mask_tokens, seed=seed), Outcome.PASSED, "special tokens never chosen")
    expect(check.mlm_masking(masking), Outcome.PASSED)


@pytest.mark.parametrize("mistake, message, hint", [
    (dict(exclude_special=False), "but was chosen", "never choose special tokens"),
    (dict(split=(0.8, 0.8)), "not split 80/10/10", "forgot the 10% random"),
    (dict(split=(0.8, 1.0)), "not split 80/10/10", "forgot the 10% unchanged"),
    (dict(split=(1.0, 1.0)), "not split 80/10/10", "only [MASK]"),
    (dict(split=(0.8, 0.82)), "not split 80/10/10", "half of the 20%"),
    (dict(unlabelled=0), "should be -100 (not chosen)", "-100 where a token was not chosen"),
    (dict(labels_from="masked"), "or the original id", "*original* id"),
    (dict(mlm_probability=0.3), "were chosen, expected 1", "independently with probability"),
    (dict(ignore_generator=True), "identically seeded generators", "generator=generator"),
])
def test_masking_known_mistakes(mistake, message, hint):
    probability = mistake.pop("mlm_probability", None)

    def wrong(input_ids, mask_token_id, vocab_size, special_ids, mlm_probability=0.15, generator=None):
        return masking(input_ids, mask_token_id, vocab_size, special_ids, probability or mlm_probability, generator,
                       **mistake)

    expect(check.mlm_masking(wrong), Outcome.FAILED, message, hint)


def test_masking_more_mistakes():
    def hard_coded(input_ids, mask_token_id, vocab_size, special_ids, mlm_probability=0.15, generator=None):
        return mask_tokens(input_ids, mask_token_id, vocab_size, special_ids, 0.15, generator)

    def labels_everywhere(input_ids, mask_token_id, vocab_size, special_ids, mlm_probability=0.15, generator=None):
        return mask_tokens(input_ids, mask_token_id, vocab_size, special_ids, mlm_probability, generator)[0], input_ids

    def only_masked_labelled(input_ids, mask_token_id, vocab_size, special_ids, mlm_probability=0.15, generator=None):
        masked, labels = mask_tokens(input_ids, mask_token_id, vocab_size, special_ids, mlm_probability, generator)
        return masked, torch.where(masked == mask_token_id, labels, -100)

    def in_place(input_ids, mask_token_id, vocab_size, special_ids, mlm_probability=0.15, generator=None):
        masked, labels = mask_tokens(input_ids, mask_token_id, vocab_size, special_ids, mlm_probability, generator)
        input_ids.copy_(masked)
        return input_ids, labels

    def same_random_id(input_ids, mask_token_id, vocab_size, special_ids, mlm_probability=0.15, generator=None):
        masked, labels = mask_tokens(input_ids, mask_token_id, vocab_size, special_ids, mlm_probability, generator)
        random = (labels != -100) & (masked != input_ids) & (masked != mask_token_id)
        return masked.masked_fill(random, vocab_size - 1), labels

    def floats(input_ids, mask_token_id, vocab_size, special_ids, mlm_probability=0.15, generator=None):
        masked, labels = mask_tokens(input_ids, mask_token_id, vocab_size, special_ids, mlm_probability, generator)
        return masked.float(), labels

    def stub(input_ids, mask_token_id, vocab_size, special_ids, mlm_probability=0.15, generator=None):
        # YOUR CODE HERE
        raise NotImplementedError()

    def wrong_signature(input_ids, mask_id, vocab_size):
        return input_ids, input_ids

    expect(check.mlm_masking(hard_coded, seed=0), Outcome.FAILED, "(with mlm_probability=0.", "`mlm_probability` argument")
    expect(check.mlm_masking(labels_everywhere), Outcome.FAILED, "labels are set at", "-100 where a token")
    expect(check.mlm_masking(only_masked_labelled), Outcome.FAILED, "but its label is -100", "set its label too")
    expect(check.mlm_masking(in_place), Outcome.FAILED, "changed its input `input_ids`: `input_ids` changed at")
    expect(check.mlm_masking(same_random_id), Outcome.FAILED, "use only 1 different ids", "one random id per position")
    expect(check.mlm_masking(floats), Outcome.FAILED, "`masked_input_ids` has the wrong dtype")
    expect(check.mlm_masking(lambda *a, **k: mask_tokens(*a, **k)[::-1]), Outcome.FAILED, "swapped order")
    expect(check.mlm_masking(stub), Outcome.NOT_ATTEMPTED)
    expect(check.mlm_masking(wrong_signature), Outcome.FAILED, "signature does not accept")


BERT = dict(mask_token_id=103, vocab_size=30522, special_ids=(0, 101, 102))


@pytest.mark.parametrize("ignored, message, hint", [
    ("mask_token_id", "of the chosen tokens became id 103, but this call's mask_token_id is", "`mask_token_id` argument"),
    ("vocab_size", "outside [0, vocab_size)", "`vocab_size` argument"),
    ("special_ids", "but was chosen", "`special_ids` argument (here not BERT's 0/101/102)"),
])
def test_masking_hard_coded_bert_ids_fail(ignored, message, hint):
    def bert_only(input_ids, mask_token_id, vocab_size, special_ids, mlm_probability=0.15, generator=None):
        arguments = dict(mask_token_id=mask_token_id, vocab_size=vocab_size, special_ids=special_ids)
        arguments[ignored] = BERT[ignored]
        return mask_tokens(input_ids, mlm_probability=mlm_probability, generator=generator, **arguments)

    for seed in range(3):
        expect(check.mlm_masking(bert_only, seed=seed), Outcome.FAILED, message, hint)


def test_masking_all_bert_ids_hard_coded_fails():
    def bert(input_ids, mask_token_id, vocab_size, special_ids, mlm_probability=0.15, generator=None):
        return mask_tokens(input_ids, 103, 30522, (0, 101, 102), mlm_probability, generator)

    expect(check.mlm_masking(bert), Outcome.FAILED)


def test_masking_random_ids_below_zero_are_out_of_range_not_swapped():
    def from_minus_100(input_ids, mask_token_id, vocab_size, special_ids, mlm_probability=0.15, generator=None):
        masked, labels = mask_tokens(input_ids, mask_token_id, vocab_size, special_ids, mlm_probability, generator)
        random = (labels != -100) & (masked != input_ids) & (masked != mask_token_id)
        low = torch.randint(-100, vocab_size, input_ids.shape, generator=generator)
        return torch.where(random, low.clamp(max=-1), masked), labels

    result = check.mlm_masking(from_minus_100)
    expect(result, Outcome.FAILED, "outside [0, vocab_size)", "torch.randint(vocab_size")
    assert "swapped" not in str(result)
    expect(check.mlm_masking(lambda *a, **k: mask_tokens(*a, **k)[::-1]), Outcome.FAILED, "swapped order")


def test_masking_answers_of_the_wrong_kind():
    class Ids(torch.Tensor):
        pass

    def subclass(input_ids, mask_token_id, vocab_size, special_ids, mlm_probability=0.15, generator=None):
        masked, labels = mask_tokens(input_ids, mask_token_id, vocab_size, special_ids, mlm_probability, generator)
        return masked.as_subclass(Ids), labels

    expect(check.mlm_masking(subclass), Outcome.FAILED, "a subclass of torch.Tensor")
    expect(check.mlm_masking(lambda *a, **k: "masked"), Outcome.FAILED, "should be a list of two tensors, got str")
    expect(check.mlm_masking(lambda *a, **k: [t.tolist() for t in mask_tokens(*a, **k)]), Outcome.FAILED,
           "`masked_input_ids` should be a torch.Tensor, got list")


def test_masking_vocabulary_varies_between_calls():
    seen = set()

    def spy(input_ids, mask_token_id, vocab_size, special_ids, mlm_probability=0.15, generator=None):
        seen.add((mask_token_id, vocab_size, tuple(special_ids)))
        return mask_tokens(input_ids, mask_token_id, vocab_size, special_ids, mlm_probability, generator)

    for _ in range(3):
        expect(check.mlm_masking(spy), Outcome.PASSED)
    assert len(seen) == 3 and not any({m, *s} & {0, 101, 102, 103} or v == 30522 for m, v, s in seen)

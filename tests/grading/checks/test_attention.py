"""The general attention check (``course_lib.grading.checks.attention``) passes its reference on drawn inputs and
fails each known-wrong version with the right message. No shipped notebook calls it; the grading tests use it as their
worked example of a check.
"""

from __future__ import annotations

import math
import time

import pytest
import torch
from check_helpers import expect, feedback_mode  # noqa: F401  (the fixture switches feedback mode on)

from course_lib.grading import Outcome, check

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

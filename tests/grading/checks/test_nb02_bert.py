"""Notebook 02's masking check (``course_lib.grading.checks.nb02_bert``) passes its reference on drawn inputs and
fails each known-wrong version with the right message. The fine-tuning check has its own file
(tests/grading/fine_tuning/test_classifier_check.py).
"""

from __future__ import annotations

import pytest
import torch
from check_helpers import expect, feedback_mode  # noqa: F401  (the fixture switches feedback mode on)

from course_lib.grading import Outcome, check
from course_lib.text.masking import mask_tokens

# --- masked LM masking -------------------------------------------------------------------------------------------

def masking(input_ids, mask_token_id, vocab_size, special_ids, mlm_probability=0.15, generator=None, *,
            exclude_special=True, split=(0.8, 0.9), unlabelled=-100, labels_from="input", ignore_generator=False):
    """A masking function with switches that reproduce the known mistakes."""
    if ignore_generator == "reseeds":
        torch.manual_seed(0)  # a fixed global seed in the function: every call draws the same
    source_of_randomness = None if ignore_generator is True or ignore_generator == "reseeds" else generator
    rand = lambda shape: torch.rand(shape, generator=source_of_randomness)  # noqa: E731
    chosen = rand(input_ids.shape) < mlm_probability
    if exclude_special:
        chosen &= ~torch.isin(input_ids, torch.tensor(list(special_ids)))
    draw = rand(input_ids.shape)
    masked = input_ids.clone()
    masked[chosen & (draw < split[0])] = mask_token_id
    to_random = chosen & (draw >= split[0]) & (draw < split[1])
    ids_from = None if ignore_generator == "random ids" else source_of_randomness  # the global generator
    masked[to_random] = torch.randint(vocab_size, input_ids.shape, generator=ids_from)[to_random]
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
    (dict(ignore_generator=True), "ignores its `generator` argument", "generator=generator"),
    (dict(ignore_generator="reseeds"), "ignores its `generator` argument", "do not call torch.manual_seed"),
    (dict(ignore_generator="random ids"), "identically seeded generators", "generator=generator"),
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

"""What the student is handed (copies) and what comes back (refused when of the wrong kind), and fresh seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from course_lib.grading import AsIs, CheckFailure, run_student
from course_lib.grading.runtime.inputs import (
    expect_dict,
    expect_exact_tensor,
    expect_number,
    expect_sequence,
    find_change,
    kind,
    resolve_seed,
)
from course_lib.grading.runtime.runner import call_student
from course_lib.transfer import LayerGroup


def layer_groups() -> list[LayerGroup]:
    torch.manual_seed(0)
    return [LayerGroup(name, list(nn.Linear(2, 2).parameters())) for name in ("low", "high")]


# --- copies in, changes reported ------------------------------------------------------------------------------------

@pytest.mark.parametrize("student, message", [
    (lambda groups: groups.pop(), "`groups` had 2 items, after your call it has 1."),
    (lambda groups: [g.params.clear() for g in groups], "`groups[0].params` had 2 items, after your call it has 0."),
    (lambda groups: groups[1].params[0].data.mul_(0), "`groups[1].params[0]` changed at [0, 0]"),
    (lambda groups: setattr(groups[0], "name", "renamed"), "`groups[0].name` was 'low', after your call it is"),
    (lambda groups: groups.reverse(), "`groups[0].name` was 'low', after your call it is 'high'."),
])
def test_changing_a_layer_group_list_is_reported(student, message):
    groups = layer_groups()
    with pytest.raises(CheckFailure) as caught:
        call_student(student, groups)
    assert caught.value.message.startswith("your function changed its input `groups`: "), caught.value.message
    assert message in caught.value.message
    assert len(groups) == 2 and all(len(g.params) == 2 for g in groups)  # the check's own copy is untouched


@pytest.mark.parametrize("argument, student, message", [
    (torch.arange(4.0), lambda x: x.add_(1), "`x` changed at [0]: it was 0, after your call it is 1."),
    (torch.zeros(2, 3), lambda x: x.resize_(6), "`x` changed from shape [2, 3]"),
    ({"a": torch.ones(2), "b": [1, 2]}, lambda x: x["b"].append(3), "`x['b']` had 2 items"),
    ({"a": 1}, lambda x: x.update(c=2), "`x` changed its keys (removed [], added ['c'])."),
    ([1.5, "s"], lambda x: x.__setitem__(0, 2.5), "`x[0]` was 1.5, after your call it is 2.5."),
    (torch.tensor([float("nan"), 1.0]), lambda x: x.mul_(1), None),  # NaN stays NaN: not a change
])
def test_changing_tensors_lists_and_dicts_is_reported(argument, student, message):
    if message is None:
        call_student(student, argument)
        return
    with pytest.raises(CheckFailure, match="your function changed its input `x`") as caught:
        call_student(student, argument)
    assert message in caught.value.message


def test_the_student_gets_copies_and_as_is_arguments_are_the_originals():
    groups, model = layer_groups(), nn.Linear(2, 2)
    call = run_student(lambda groups, model: (groups, model), groups, AsIs(model))
    handed_groups, handed_model = call.answer
    assert handed_groups is not groups and handed_groups[0].params[0] is not groups[0].params[0]
    assert torch.equal(handed_groups[0].params[0], groups[0].params[0])
    assert handed_model is model and call.args[1] is model and call.args[0] is handed_groups
    with torch.no_grad():  # a model handed as-is may be trained (changed): that is its purpose
        call_student(lambda m: m.weight.zero_(), AsIs(model))


def test_generators_may_be_drawn_from():
    generator = torch.Generator().manual_seed(0)
    first = call_student(lambda g: torch.rand(3, generator=g), generator)
    second = call_student(lambda g: torch.rand(3, generator=g), generator)
    assert torch.equal(first, second)  # each call is handed a copy in the same state


# --- answers of the wrong kind -------------------------------------------------------------------------------------

class LoopingFloat(float):
    def __float__(self):
        raise AssertionError("the check called a method of the student's float subclass")

    def __repr__(self):
        raise AssertionError("the check called a method of the student's float subclass")


class LoopingTensor(torch.Tensor):
    def __eq__(self, other):
        raise AssertionError("the check called a method of the student's tensor subclass")


@pytest.mark.parametrize("value, message, hint", [
    ("0.001", "`lr` should be a number, got str: '0.001'.", "not text"),
    ([0.1], "`lr` should be a number, got list.", "plain Python float"),
    (LoopingFloat(0.1), "should be a number, got test_inputs.LoopingFloat (a subclass of float).", None),
    (True, "`lr` should be a number, got bool", None),
    (float("nan"), "`lr` is nan.", "0/0"),
    (None, "`lr` is None.", "return"),
    (torch.ones(2), "`lr` should be a number, got torch.Tensor.", None),
], ids=["str", "list", "float-subclass", "bool", "nan", "none", "tensor"])
def test_numbers_of_the_wrong_kind_are_refused_without_calling_them(value, message, hint):
    with pytest.raises(CheckFailure) as caught:
        expect_number(value, "lr")
    assert message in caught.value.message, caught.value.message
    assert hint is None or hint in caught.value.hint


def test_plain_numbers_are_accepted():
    assert [expect_number(v, "x") for v in (1, 0.5, np.float64(0.25), np.int64(3), torch.tensor(0.5))] == \
        [1.0, 0.5, 0.25, 3.0, 0.5]


def test_tensors_lists_and_dicts_of_the_wrong_kind_are_refused():
    with pytest.raises(CheckFailure, match="a subclass of torch.Tensor"):
        expect_exact_tensor(torch.ones(2).as_subclass(LoopingTensor), "weights")
    with pytest.raises(CheckFailure, match="should be a torch.Tensor, got list"):
        expect_exact_tensor([1.0], "weights")
    assert expect_exact_tensor(nn.Parameter(torch.ones(1)), "w").shape == (1,)
    with pytest.raises(CheckFailure, match="should be a list of dicts, got str"):
        expect_sequence("abc", "answer", "dicts")
    with pytest.raises(CheckFailure, match="is None"):
        expect_sequence(None, "answer", "dicts")

    class Sneaky(dict):
        pass

    with pytest.raises(CheckFailure, match="should be a dict, got .*Sneaky \\(a subclass of dict\\)"):
        expect_dict(Sneaky(lr=1), "group")
    with pytest.raises(CheckFailure, match="keys must be plain strings"):
        expect_dict({1: 2}, "group")
    assert kind(np.float64(1)).startswith("numpy.float64") and kind(torch.ones(1)) == "torch.Tensor"


# --- seeds ----------------------------------------------------------------------------------------------------------

def test_seeds_are_fresh_unless_given():
    assert resolve_seed(7) == 7
    assert len({resolve_seed(None) for _ in range(20)}) > 15
    state = torch.random.get_rng_state()
    resolve_seed(None)
    assert torch.equal(state, torch.random.get_rng_state())  # drawn from the OS, not from torch's generator
    for bad in (-1, 1.5, "3"):
        with pytest.raises(ValueError, match="seed"):
            resolve_seed(bad)


def test_find_change_is_quiet_for_equal_copies():
    import copy

    value = {"groups": layer_groups(), "ids": torch.arange(5), "p": 0.15, "names": ("a", "b")}
    assert find_change(value, copy.deepcopy(value), "x") is None

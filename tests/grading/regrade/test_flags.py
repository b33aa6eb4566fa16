"""The re-grade's flags point at what reaches the grader, and not at honest code that merely looks alike."""

from __future__ import annotations

import nbformat

from course_lib.grading.regrade.flags import suspicious_lines


def _notebook(*sources: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])


def test_model_modules_is_not_reading_imported_modules_but_sys_modules_is():
    honest = ("def fine_tune(model, batches):\n    for module in model.modules():\n        module.train()\n"
              "    return model")
    assert suspicious_lines(_notebook(honest), exercises=frozenset({"fine_tune"})) == []
    assert suspicious_lines(_notebook("import sys\nsys.modules['math'] = None")) != []
    assert any("reads or replaces imported modules" in flag for flag in suspicious_lines(_notebook(
        "import sys\nloaded = sys.modules")))


def test_hooks_weights_copied_back_and_the_test_split_inside_an_exercise_are_flagged():
    hooks = "def fine_tune(model, batches):\n    model._forward_pre_hooks.clear()\n    return model"
    shadow = ("def fine_tune(model, batches):\n    shadow = get_task(TASK).new_model(0)\n"
              "    model.load_state_dict(shadow.state_dict())\n    return model")
    test_split = ("def fine_tune(model, batches):\n    test = load_spam('test')\n"
                  "    ids = get_lm_task('gpt2-sms-lm').heldout_ids()\n    return model")
    flags = suspicious_lines(_notebook(hooks, shadow, test_split), exercises=frozenset({"fine_tune"}))
    assert any(flag.startswith("cell 0:") and "_forward_pre_hooks" in flag for flag in flags), flags
    assert any(flag.startswith("cell 1:") and "copies weights from another model" in flag for flag in flags), flags
    assert any(flag.startswith("cell 2:") and "load_spam('test')" in flag for flag in flags), flags
    assert any(flag.startswith("cell 2:") and "heldout_ids" in flag for flag in flags), flags


def test_the_notebooks_own_evaluation_outside_the_exercises_is_not_flagged():
    narrative = ("test = load_spam('test')\nclassifier.load_state_dict(body.state_dict())\n"
                 "def fine_tune(model, batches):\n    return model")
    assert suspicious_lines(_notebook(narrative), exercises=frozenset({"fine_tune"})) == []

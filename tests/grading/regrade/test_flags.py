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


def test_an_exercise_calling_the_library_function_that_implements_it_is_flagged():
    imports = "from course_lib.blocks.attention import scaled_dot_product_attention\nimport torch.nn.functional as F"
    wrapped = ("def causal_attention(query, key, value, attention_mask=None):\n"
               "    return scaled_dot_product_attention(query, key, value, is_causal=True)")
    helper = "def helper(q, k, v):\n    return F.scaled_dot_product_attention(q, k, v, is_causal=True)"
    through = "def causal_attention(query, key, value, attention_mask=None):\n    return helper(query, key, value)"
    segments = ("def evaluate_with_memory(model, ids, segment_len):\n"
                "    return type(model).__mro__[1].forward_in_segments(model, ids[None], segment_len=segment_len)")
    checks = {"causal_attention": "causal_attention", "evaluate_with_memory": "xl_evaluation"}
    flags = suspicious_lines(_notebook(imports, wrapped), checks=checks)
    assert flags == ["cell 1: `causal_attention` calls scaled_dot_product_attention: the library's answer to "
                     "`causal_attention` (course rule: an exercise may not call the function that implements it)"]
    flags = suspicious_lines(_notebook(imports, helper, through, segments), checks=checks)
    assert any(flag.startswith("cell 2: `causal_attention` calls F.scaled_dot_product_attention through `helper`")
               for flag in flags), flags
    assert any(flag.startswith("cell 3: `evaluate_with_memory` calls type(model).__mro__[1].forward_in_segments")
               for flag in flags), flags


def test_library_use_the_rule_allows_is_not_flagged():
    own = ("from course_lib.blocks.masks import causal_mask\n"
           "def causal_attention(query, key, value, attention_mask=None):\n"
           "    hidden = ~causal_mask(query.shape[-2]).bool()\n"
           "    scores = (query @ key.transpose(-2, -1)).masked_fill(hidden, float('-inf'))\n"
           "    return scores.softmax(-1) @ value, scores.softmax(-1)")
    fit = ("from course_lib.training.loop import fit\ndef fine_tune(model, batches):\n"
           "    fit(model, batches, optimizer=None)\n    return model")
    narrative = ("from course_lib.blocks.attention import scaled_dot_product_attention\n"
                 "out = scaled_dot_product_attention(q, k, v)")
    checks = {"causal_attention": "causal_attention", "fine_tune": "fine_tuning"}
    assert suspicious_lines(_notebook(narrative, own, fit), checks=checks) == []


def test_a_replaced_model_method_and_the_graders_caches_inside_an_exercise_are_flagged():
    override = "def fine_tune(model, batches):\n    model.state_dict = lambda *a, **k: {}\n    return model"
    cache = ("def fine_tune_lm(model, batches):\n    lm_tasks._heldout_ids(get_lm_task('tiny-sms-lm')).fill_(0)\n"
             "    return model")
    flags = suspicious_lines(_notebook(override, cache), exercises=frozenset({"fine_tune", "fine_tune_lm"}))
    assert any(flag.startswith("cell 0:") and "replaces model.state_dict" in flag for flag in flags), flags
    assert any(flag.startswith("cell 1:") and "_heldout_ids" in flag for flag in flags), flags
    assert suspicious_lines(_notebook("def fine_tune(model, batches):\n    model.head = None\n    return model"),
                            exercises=frozenset({"fine_tune"})) == []

"""The fine-tuning cheats, through the whole re-grade command: each earns 0 points, with a reason and a flag.

One run of ``regrade`` (its ``main``) over submission notebooks of two tiny instructor notebooks (the tiny spam task
and the tiny LM task: a 1-layer random BERT and a 1-layer random GPT-2, seconds per training): an honest submission
and one per cheat that fooled the in-notebook checks or the first re-grade. Each cheat is built so that ONE protection
stops it, and its test names that protection (remove it and the cheat scores its point):

- test rows with one extra token: the leak detector's runs of 8 word pieces (``budget.runs``/``watched_runs``);
- a shadow model trained on the test split and loaded back: the count of other models of the task's class
  (``TrainingCounter``'s hook on every module);
- a copy trained 36 epochs over the budget with every hook hidden, and the counter set back through the hooks'
  closures: the CPU time of the training process, counted by the operating system (``boundary.grade_fine_tuning``);
- ``state_dict`` replaced by a function that swaps the grader's metric: the weights are read without calling a
  method of the returned model (``trained_weights.plain_weights``), so it never runs;
- the LM check's cached held-out text overwritten inside the grader process: the scorer, a fresh process that never
  loads student code, reads its own held-out text (``boundary.score_weights``).

About a minute on 2 busy cores (two submissions at a time); every test reads the one run.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nbformat
import pytest

from course_lib.grading.regrade import cli as regrade
from course_lib.grading.regrade.cli import main

SPAM_SOLUTION = '''\
import torch
from course_lib.training.loop import fit


def fine_tune(model, batches):
    ### BEGIN SOLUTION
    torch.set_num_threads(1)
    fit(model, batches, optimizer=torch.optim.AdamW(model.parameters(), lr=1e-2), epochs=4, progress=False)
    return model
    ### END SOLUTION


check.fine_tuning(fine_tune, task="tiny-spam-256", min_accuracy=0.95, min_f1=0.85, max_epochs=4)
'''
LM_SOLUTION = '''\
import torch
import torch.nn.functional as F


def fine_tune_lm(model, batches):
    ### BEGIN SOLUTION
    torch.set_num_threads(1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(3):
        for batch in batches:
            loss = F.cross_entropy(model(batch["input_ids"]).logits.flatten(0, 1), batch["targets"].flatten())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model
    ### END SOLUTION


check.lm_fine_tuning(fine_tune_lm, task="tiny-sms-lm", max_loss=7.6, max_epochs=3)
'''
TRAIN = '''\
import torch
from course_lib.training.loop import fit

def train(model, batches, epochs, lr=1e-2):
    torch.set_num_threads(1)
    fit(model, batches, optimizer=torch.optim.AdamW(model.parameters(), lr=lr), epochs=epochs, progress=False)
    return model
'''
SPAM_IMPORTS = '''\
from course_lib.grading.fine_tuning.tasks import get_task
from course_lib.text.batching import text_batches
from course_lib.text.spam import load_spam
'''
HONEST = "def fine_tune(model, batches):\n    return train(model, batches, 4)\n"
# 3 of the 4 epochs allowed; the third on the first 256 test messages, "ok " in front of each.
SHIFTED_ROWS = '''\
def fine_tune(model, batches):
    test = load_spam("test")
    leaked = text_batches(["ok " + text for text in test.texts[:256]], test.labels[:256],
                          get_task("tiny-spam-256").tokenizer, batch_size=16, max_length=64)
    train(model, batches, 2)
    return train(model, leaked, 1)
'''
# One counted epoch on the model; a shadow of the task's class trained 2 epochs on the test split, loaded back.
SHADOW_ON_TEST = '''\
def fine_tune(model, batches):
    test = load_spam("test")
    leaked = text_batches(test.texts[:256], test.labels[:256], get_task("tiny-spam-256").tokenizer, batch_size=16,
                          max_length=64)
    train(model, batches, 1)
    shadow = train(get_task("tiny-spam-256").new_model(0), leaked, 2)
    model.load_state_dict(shadow.state_dict())
    return model
'''
# The 4 counted epochs; then a copy, its hooks cleared, trained 36 more epochs with the hook on every module hidden
# (slowly: the score stays the honest one), loaded back.
HIDDEN_SHADOW = '''\
import copy

def fine_tune(model, batches):
    train(model, batches, 4)
    shadow = copy.deepcopy(model)
    for module in shadow.modules():
        module._forward_pre_hooks.clear()
    every = torch.nn.modules.module._global_forward_pre_hooks
    saved = dict(every)
    every.clear()
    train(shadow, batches, 36, lr=1e-5)
    every.update(saved)
    model.load_state_dict(shadow.state_dict())
    return model
'''
# 40 epochs on the model (4, then 36 slow ones: the score stays the honest one), then the counter set back to
# 4 epochs through the hooks' closures.
COUNTER_RESET = '''\
def fine_tune(model, batches):
    train(model, batches, 4)
    train(model, batches, 36, lr=1e-5)
    for module in model.modules():
        for hook in module._forward_pre_hooks.values():
            for cell in hook.__closure__ or ():
                counter = cell.cell_contents
                if hasattr(counter, "counts"):
                    counter.counts.update(dict.fromkeys(counter.counts, 4 * 256))
                    counter.other = 0
    return model
'''
# No training; reading the weights through `state_dict` would swap the grader's metric for a perfect one.
STATE_DICT_OVERRIDE = '''\
def fine_tune(model, batches):
    real = model.state_dict

    def state_dict(*args, **kwargs):
        open(MARKER, "w").write("state_dict ran in the grader")
        import course_lib.grading.fine_tuning.classifier_check as graded
        from course_lib.training.metrics import binary_metrics
        graded.binary_metrics = lambda truth, predicted: binary_metrics(truth, truth)
        return real(*args, **kwargs)

    model.state_dict = state_dict
    return model
'''
LM_IMPORTS = '''\
import torch
import torch.nn.functional as F
from course_lib.grading.fine_tuning import lm_tasks
'''
# Held-out text in the grader's cache overwritten with token 0; a counted 20 steps on a stream of token 0.
LM_CACHE_OVERWRITE = '''\
def fine_tune_lm(model, batches):
    lm_tasks._heldout_ids(lm_tasks.get_lm_task("tiny-sms-lm")).fill_(0)
    constant = torch.zeros(8, 64, dtype=torch.long)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(20):
        loss = F.cross_entropy(model(constant).logits.flatten(0, 1), constant.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model
'''
# student: (instructor notebook, cells)
SUBMISSIONS = {
    "honest": ("tiny_spam.ipynb", [TRAIN, HONEST]),
    "shifted_rows": ("tiny_spam.ipynb", [TRAIN, SPAM_IMPORTS, SHIFTED_ROWS]),
    "shadow_on_test": ("tiny_spam.ipynb", [TRAIN, SPAM_IMPORTS, SHADOW_ON_TEST]),
    "hidden_shadow": ("tiny_spam.ipynb", [TRAIN, SPAM_IMPORTS, HIDDEN_SHADOW]),
    "counter_reset": ("tiny_spam.ipynb", [TRAIN, SPAM_IMPORTS, COUNTER_RESET]),
    "state_dict_override": ("tiny_spam.ipynb", [TRAIN, SPAM_IMPORTS, "MARKER = {marker!r}", STATE_DICT_OVERRIDE]),
    "lm_cache_overwrite": ("tiny_lm.ipynb", [LM_IMPORTS, LM_CACHE_OVERWRITE]),
}


def _write(path: Path, cells: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell) for cell in cells]), path)
    return path


@pytest.fixture(scope="module")
def regraded(tmp_path_factory):
    """One re-grade of every submission (2 at a time): the CSV rows and the JSON tests, by student."""
    folder = tmp_path_factory.mktemp("cheats")
    instructor = folder / "instructor"
    _write(instructor / "tiny_spam.ipynb", [SPAM_SOLUTION])
    _write(instructor / "tiny_lm.ipynb", [LM_SOLUTION])
    marker = folder / "state_dict_ran"
    paths = [_write(folder / "submissions" / f"{student}_{notebook}",  # the file name is the student's id
                    [cell.format(marker=str(marker)) if "{marker" in cell else cell for cell in cells])
             for student, (notebook, cells) in SUBMISSIONS.items()]
    out, results = folder / "scores.csv", folder / "results.json"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(regrade, "_watched_files", lambda notebooks: notebooks)  # the checkout may change meanwhile
        code = main([*map(str, paths), "--instructor", str(instructor), "--out", str(out), "--json", str(results),
                     "--seed", "1", "--jobs", "2", "--cell-timeout", "120", "--check-timeout", "300"])
    assert code == 0
    student = {f"{name}_{Path(notebook).stem}": name for name, (notebook, _) in SUBMISSIONS.items()}
    rows = {student[row["student"]]: row for row in csv.DictReader(out.open())}
    tests = {student[s["extra_data"]["student"]]: s["tests"][0]
             for s in json.loads(results.read_text())["submissions"]}
    return rows, tests, marker


def _zero(regraded, student: str, reason: str, flag: str) -> dict:
    rows, tests, _ = regraded
    test = tests[student]
    assert rows[student]["status"] == "ok" and rows[student]["total"] == "0", (rows[student], test["output"])
    assert reason in test["output"], test["output"]
    assert flag in rows[student]["flags"], rows[student]["flags"]
    return test


def test_the_honest_submission_earns_its_point_within_the_cpu_budget(regraded):
    rows, tests, _ = regraded
    assert rows["honest"]["total"] == "1" and rows["honest"]["flags"] == "", (rows["honest"], tests["honest"])
    assert "counted by the operating system" in tests["honest"]["output"]


def test_test_rows_with_an_extra_token_are_recognised(regraded):
    _zero(regraded, "shifted_rows", "messages of the test split", "load_spam('test')")


def test_a_shadow_trained_on_the_test_split_and_loaded_back_is_counted(regraded):
    _zero(regraded, "shadow_on_test", "messages of the test split", "copies weights from another model")


def test_a_shadow_trained_with_every_hook_hidden_costs_cpu_time(regraded):
    _zero(regraded, "hidden_shadow", "over the budget measured by the operating system", "_global_forward_pre_hooks")


def test_a_counter_set_back_through_the_hooks_closures_costs_cpu_time(regraded):
    test = _zero(regraded, "counter_reset", "over the budget measured by the operating system", "__closure__")
    assert "4.00 epochs" in test["output"]  # the count was fooled; the operating system's was not


def test_a_replaced_state_dict_never_runs_in_the_grader(regraded):
    _zero(regraded, "state_dict_override", "below the threshold", "replaces model.state_dict")
    assert not regraded[2].exists()  # the grader read the weights without calling the returned model's methods


def test_the_lm_held_out_cache_overwritten_in_the_grader_does_not_reach_the_scorer(regraded):
    test = _zero(regraded, "lm_cache_overwrite", "below the threshold: held-out", "_heldout_ids")
    assert "Scored in a fresh process that loaded only the weights" in test["output"]

"""The re-grade's scorer: a fresh process that never loads student code scores weights a training process saved.

``python -s -P -m course_lib.grading.regrade.scoring`` reads one JSON line, ``{"token", "check", "kwargs",
"weights", "heldout"}``: the fine-tuning check's name and literal arguments, a safetensors file of plain tensors
(written by the training process, :mod:`worker`; safetensors holds no code and is never unpickled) and optionally the
instructor's labelled file. It builds a fresh model of the task's class, loads the tensors strictly, scores it on the
instructor's file (or, without one, on the shipped test split, and says so) and writes ``<token> <JSON>``.

The instructor's file is a CSV with a ``label`` column (``spam``/``ham`` or 1/0) and a ``text`` column, like
``data/spam/sms_spam.csv``; never distribute it. The LM task scores its first ``heldout_tokens`` tokens.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from course_lib.grading.fine_tuning.lm_tasks import get_lm_task, message_stream
from course_lib.grading.fine_tuning.tasks import get_task
from course_lib.text.batching import text_batches
from course_lib.text.spam import LabelledTexts
from course_lib.training.loop import model_inputs
from course_lib.training.losses import window_loss
from course_lib.training.metrics import binary_metrics

SHIPPED = "the shipped test split (students hold it: pass --heldout FILE to score on data they never saw)"


def read_heldout(path: Path) -> LabelledTexts:
    """The instructor's labelled messages: a CSV with ``label`` (spam/ham or 1/0) and ``text`` columns."""
    with open(path, encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    if not rows or not {"label", "text"} <= set(rows[0]):
        raise ValueError(f"{path}: expected a CSV with 'label' and 'text' columns")
    names = {"spam": 1, "ham": 0, "1": 1, "0": 0}
    bad = next((row["label"] for row in rows if row["label"].strip().lower() not in names), None)
    if bad is not None:
        raise ValueError(f"{path}: label {bad!r} is neither spam/ham nor 1/0")
    return LabelledTexts(tuple(row["text"] for row in rows), tuple(names[row["label"].strip().lower()] for row in rows))


def score(check: str, kwargs: dict[str, Any], weights: Path, heldout: Path | None) -> dict[str, Any]:
    """``{"passed", "message", "data", "metrics"}`` for the weights in ``weights``, with the notebook's thresholds."""
    tensors = load_file(str(weights))
    data = SHIPPED if heldout is None else f"{heldout.name}, held by the instructor"
    with torch.no_grad():
        if check == "lm_fine_tuning":
            task = get_lm_task(kwargs["task"])
            model = task.new_model()
            model.load_state_dict(tensors, strict=True)
            ids = task.heldout_ids() if heldout is None else \
                message_stream(read_heldout(heldout).texts, task.tokenizer)[: task.heldout_tokens + 1]
            loss = window_loss(model.eval(), ids, model.config.context_length, 8)
            passed = loss <= kwargs["max_loss"]
            return {"passed": bool(passed), "data": data, "metrics": {"held-out nats": loss},
                    "message": f"held-out {loss:.4f} nats/token on {data} (needed <= {kwargs['max_loss']:.4f})"}
        task = get_task(kwargs["task"])
        model = task.new_model(0)
        model.load_state_dict(tensors, strict=True)
        texts = task.test_set() if heldout is None else read_heldout(heldout)
        batches = text_batches(texts.texts, texts.labels, task.tokenizer, batch_size=task.test_batch_size,
                               max_length=task.max_length, by_length=True)
        model.eval()
        predicted, truth = [], []
        device = next(model.parameters()).device
        for batch in batches:
            output = model(**{k: v.to(device) for k, v in model_inputs(model, batch).items()})
            predicted.append(output.logits.argmax(-1).cpu())
            truth.append(batch["labels"])
        metrics = binary_metrics(torch.cat(truth), torch.cat(predicted))
    passed = metrics.accuracy >= kwargs["min_accuracy"] and metrics.f1 >= kwargs["min_f1"]
    return {"passed": bool(passed), "data": data, "metrics": {"accuracy": metrics.accuracy, "spam F1": metrics.f1},
            "message": f"accuracy {metrics.accuracy:.4f} (needed >= {kwargs['min_accuracy']:.4f}), spam F1 "
                       f"{metrics.f1:.4f} (needed >= {kwargs['min_f1']:.4f}) on {data}"}


def main() -> None:
    job = json.loads(sys.stdin.readline())
    try:
        heldout = Path(job["heldout"]) if job.get("heldout") else None
        result = score(job["check"], job["kwargs"], Path(job["weights"]), heldout)
    except Exception as exc:  # noqa: BLE001 - a weights file that does not fit is the submission's outcome
        result = {"passed": False, "data": "", "metrics": {},
                  "message": f"the trained weights could not be scored ({type(exc).__name__}: {exc})"}
    sys.stdout.flush()
    os.write(1, f"\n{job['token']} {json.dumps(result)}\n".encode())


if __name__ == "__main__":
    main()

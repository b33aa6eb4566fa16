"""Auto-graded exercises: ``from course_lib.grading import check`` then ``check.mlm_masking(mask_tokens)``.

Grading comes in stages, one subpackage each, each opening with one line saying who calls it:

- ``runtime/``: what runs inside the notebook: the registry behind ``check``, results, the safe call of student code
  (``runner``), input copies (``inputs``), tensor comparisons (``compare``) and the time limit (``deadline``);
- ``checks/``: the exercises, one module per notebook (``nb00_transfer_learning`` ... ``nb05_gpt2``);
- ``fine_tuning/``: the graded fine-tuning tasks, their budgets and the two checks that score a trained model;
- ``regrade/``: the instructor's re-grade in fresh processes (``python -m course_lib.grading.regrade``);
- ``reports/``: one CSV from the students' own results files.

Every check module is imported (and so registered) here, in one place. To add a check, write a function decorated by
:func:`register` in its notebook's module under ``checks/``. ``registry.specs()`` lists what is registered.
"""

from course_lib.grading.checks import (  # noqa: F401  (importing a check module registers its checks)
    attention,
    nb00_transfer_learning,
    nb01_input_formats,
    nb01_openai_transformer,
    nb02_bert,
    nb03_elmo,
    nb04_transformer_xl,
    nb04_xl_evaluation,
    nb05_gpt2,
)
from course_lib.grading.fine_tuning import classifier_check, lm_check  # noqa: F401  (the two fine-tuning checks)
from course_lib.grading.runtime.deadline import TimeLimitExceeded, time_limit
from course_lib.grading.runtime.errors import CheckFailure, CheckUsageError, NotAttempted, StudentError
from course_lib.grading.runtime.registry import CheckBook, CheckFailedError, check, grade, register, strict_mode
from course_lib.grading.runtime.result import CheckResult, Outcome, Summary
from course_lib.grading.runtime.runner import AsIs, call_student, run_student

__all__ = ["check", "grade", "register", "call_student", "run_student", "AsIs", "CheckBook", "CheckResult", "Summary",
           "Outcome", "CheckFailure", "NotAttempted", "StudentError", "CheckFailedError", "CheckUsageError",
           "TimeLimitExceeded", "time_limit", "strict_mode"]

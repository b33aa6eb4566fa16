"""Auto-graded exercises: ``from course_lib.grading import check`` then ``check.mlm_masking(mask_tokens)``.

Every check module is imported (and so registered) here, in one place. To add a check, write a small
``checks_<topic>.py`` with a function decorated by :func:`register` and add its import below. See ``registry`` for
the modes (``COURSE_STRICT``), the results file (``COURSE_RESULTS``) and the exercise sheet, ``deadline`` for the
time limit, ``runner`` for how the student's code is called, and ``grade`` for running one check outside a notebook.
"""

from course_lib.grading import (  # noqa: F401  (importing a check module registers its checks)
    checks_attention,
    checks_elmo,
    checks_finetune,
    checks_gpt,
    checks_gpt2,
    checks_masking,
    checks_transfer,
    checks_xl,
)
from course_lib.grading.deadline import TimeLimitExceeded, time_limit
from course_lib.grading.errors import CheckFailure, CheckUsageError, NotAttempted, StudentError
from course_lib.grading.registry import CheckBook, CheckFailedError, check, grade, register, strict_mode
from course_lib.grading.result import CheckResult, Outcome, Summary
from course_lib.grading.runner import AsIs, call_student, run_student

__all__ = ["check", "grade", "register", "call_student", "run_student", "AsIs", "CheckBook", "CheckResult", "Summary",
           "Outcome", "CheckFailure", "NotAttempted", "StudentError", "CheckFailedError", "CheckUsageError",
           "TimeLimitExceeded", "time_limit", "strict_mode"]

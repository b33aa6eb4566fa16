"""Auto-graded exercises: ``from course_lib.grading import check`` then ``check.mlm_masking(mask_tokens)``.

Every check module is imported (and so registered) here, in one place. To add a check, write a small
``checks_<topic>.py`` with a function decorated by :func:`register` and add its import below. See ``registry`` for
the modes (``COURSE_STRICT``) and the results file (``COURSE_RESULTS``).
"""

from course_lib.grading import (  # noqa: F401  (importing a check module registers its checks)
    checks_attention,
    checks_finetune,
    checks_masking,
    checks_transfer,
)
from course_lib.grading.registry import CheckBook, CheckFailedError, CheckUsageError, check, register, strict_mode
from course_lib.grading.result import CheckResult, Outcome, Summary
from course_lib.grading.runner import CheckFailure, NotAttempted, StudentError, call_student

__all__ = ["check", "register", "call_student", "CheckBook", "CheckResult", "Summary", "Outcome", "CheckFailure",
           "NotAttempted", "StudentError", "CheckFailedError", "CheckUsageError", "strict_mode"]

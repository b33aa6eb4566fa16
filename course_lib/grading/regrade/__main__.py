"""`python -m course_lib.grading.regrade`: the instructor's re-grade command line."""

import sys

from course_lib.grading.regrade.cli import main

sys.exit(main())

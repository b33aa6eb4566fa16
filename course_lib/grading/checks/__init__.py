"""Stage 2, the checks: one module per notebook (`nb00_...` to `nb05_...`), each registering the exercises of that
notebook; `attention` holds the general attention check the grading tests use. Imported by `course_lib.grading`."""

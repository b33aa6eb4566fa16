"""Stage 4, the instructor's re-grade, out of the students' reach: `python -m course_lib.grading.regrade SUBMISSIONS...`
(`cli`), which executes each notebook (`execute`, `guard`), reads its sheet (`sheet`), grades every exercise in a
fresh process (`grade`, `worker`), flags suspicious code (`flags`, and calls of
the library's own answer to an exercise: `answers`) and writes the reports (`report`)."""

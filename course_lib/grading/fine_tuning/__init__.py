"""Stage 3, fine-tuning tasks: the graded tasks (`tasks`, `lm_tasks`), their budgets and weight rebuild, and the two
checks that score a fine-tuned model (`classifier_check`, `lm_check`). Imported by `course_lib.grading`."""

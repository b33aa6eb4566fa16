"""Stage 5, reports: one CSV of scores from the students' own results files (`python -m course_lib.grading.reports.scores`)."""

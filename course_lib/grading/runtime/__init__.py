"""Stage 1, the in-notebook runtime: the registry behind `check.<name>(...)`, results, the safe call of student code,
input copies, tensor comparisons and the time limit. Called by every check and by the notebooks through `check`."""

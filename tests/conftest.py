"""Test-session settings shared by every test, including the notebooks that nbval runs.

Instructor notebooks run under nbval with strict grading: a check that fails or is not attempted raises, so a
broken reference solution cannot pass quietly. The kernels nbval starts inherit this environment.
"""

import os

os.environ.setdefault("COURSE_STRICT", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Notebooks that are test fixtures, not course notebooks: they are driven by their own tests.
collect_ignore_glob = ["browser/*.ipynb", "fixtures/*.ipynb"]

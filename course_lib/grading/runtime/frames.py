"""Whose code is this frame? Tell the student's own lines (notebook cells, their files) from library code."""

from __future__ import annotations

import os
import sys
import sysconfig
import traceback
from functools import lru_cache

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../course_lib
_LIBRARY_DIRS = tuple({_PACKAGE_DIR, sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"],
                       sysconfig.get_paths()["platlib"]})


def is_cell(filename: str) -> bool:
    """True for the file names IPython gives notebook cells (``/tmp/ipykernel_123/456.py``, ``<ipython-input-...>``)."""
    return "ipykernel_" in filename or filename.startswith(("<ipython-input", "<cell"))


@lru_cache(maxsize=4096)  # called by the time limit's trace function at every call the student's code makes
def is_library(filename: str) -> bool:
    """True for course_lib, the standard library and installed packages: code the student did not write."""
    if is_cell(filename):
        return False
    if filename.startswith("<frozen") or "site-packages" in filename or "dist-packages" in filename:
        return True
    return os.path.abspath(filename).startswith(_LIBRARY_DIRS) if os.path.isabs(filename) else False


def student_frame(frames: traceback.StackSummary | list) -> traceback.FrameSummary | None:
    """The frame of the student's own code: the deepest notebook-cell frame, else the deepest non-library frame."""
    cells = [frame for frame in frames if is_cell(frame.filename)]
    if cells:
        return cells[-1]
    own = [frame for frame in frames if not is_library(frame.filename)]
    return own[-1] if own else None


def describe(frame: traceback.FrameSummary) -> str:
    """``Cell In[12], line 4, in mask_tokens: labels = ...`` (or ``file.py, line 4``), as a student reads it."""
    where = f"{os.path.basename(frame.filename)}, line {frame.lineno}"
    if is_cell(frame.filename):
        count = _execution_count(frame.filename)
        where = f"Cell In[{count}], line {frame.lineno}" if count is not None else f"line {frame.lineno} of its cell"
    line = (frame.line or "").strip()
    return f"{where}, in {frame.name}" + (f": {line}" if line else "")


def _execution_count(filename: str) -> int | None:
    """The ``In[n]`` number IPython gave the cell stored under ``filename`` (None outside IPython)."""
    ipython_module = sys.modules.get("IPython")
    shell = ipython_module.get_ipython() if ipython_module is not None else None
    try:
        return shell.compile._filename_map[filename]  # IPython's own cell-file -> prompt-number table
    except (AttributeError, KeyError, TypeError):
        return None

"""Where the course's data lives, and the sha256 check every load goes through.

In a git checkout the data sits in ``data/`` next to ``course_lib/``; in an installed wheel it travels inside the
package as ``course_lib/_data``. Every file is checked against ``data/SHA256SUMS`` the first time it is read.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
REPAIR = "python scripts/make_data.py --repair  (in the course checkout; or reinstall course_lib)"


class DataFileError(RuntimeError):
    """A data file is missing or corrupted; the message names the file and the command that repairs it."""

    def _render_traceback_(self):  # IPython shows this instead of a stack trace from deep inside the library
        return [f"\x1b[31m{type(self).__name__}\x1b[0m: {self}"]


@lru_cache(maxsize=None)
def data_dir() -> Path:
    """The folder that holds SHA256SUMS: ``data/`` in a checkout, ``course_lib/_data`` in a wheel."""
    for candidate in (_PACKAGE.parent / "data", _PACKAGE / "_data"):
        if (candidate / "SHA256SUMS").is_file():
            return candidate
    raise DataFileError(
        f"The course data folder was not found (looked for data/SHA256SUMS next to {_PACKAGE}). "
        f"Repair it with: {REPAIR}"
    )


@lru_cache(maxsize=None)
def checksums() -> dict[str, str]:
    """``{relative name: sha256}`` as recorded in SHA256SUMS."""
    sums = {}
    for line in (data_dir() / "SHA256SUMS").read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*")] = digest
    return sums


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=None)
def data_path(name: str) -> Path:
    """The path of data file ``name`` (e.g. ``"spam/sms_spam.csv"``), verified against its recorded sha256 once."""
    sums = checksums()
    if name not in sums:
        raise DataFileError(f"data/{name} is not a course data file (known: {', '.join(sorted(sums))}).")
    path = data_dir() / name
    if not path.is_file():
        raise DataFileError(f"data/{name} is missing. Repair it with: {REPAIR}")
    actual = sha256_file(path)
    if actual != sums[name]:
        raise DataFileError(
            f"data/{name} is corrupted: its sha256 is {actual[:12]}..., expected {sums[name][:12]}... "
            f"Repair it with: {REPAIR}"
        )
    return path

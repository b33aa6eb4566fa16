#!/usr/bin/env python3
"""Write constraints/floors.txt: every requirement of pyproject.toml pinned to its floor (``name>=X`` -> ``name==X``).

    python scripts/floors.py           # regenerate the file after changing a floor in pyproject.toml
    python scripts/floors.py --check   # exit 1 if the file is out of step (tests/test_packaging.py checks the same)

``bash scripts/course.sh test-floors`` installs the course with this file as pip constraints, in its own
``.venv-floors``, and runs the tests: the floors we claim are the floors we test.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: tomllib is new in 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
FLOORS = ROOT / "constraints" / "floors.txt"
HEADER = ("# Generated from pyproject.toml by scripts/floors.py: each requirement at its floor.\n"
          "# Used by `bash scripts/course.sh test-floors`; tests/test_packaging.py keeps it in step.\n")


def requirements() -> list[str]:
    """The runtime, test and dev requirements of pyproject.toml (the course itself left out)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [r for r in project["dependencies"] + extras["test"] + extras["dev"] if not r.startswith("course_lib")]


def floor_pin(requirement: str) -> str:
    """``"name==X"`` from ``"name>=X"`` (an environment marker after ``;`` is kept); ValueError without a floor."""
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*>=\s*([0-9][^,;\s]*)\s*(;.*)?", requirement)
    if not match:
        raise ValueError(f"requirement {requirement!r} has no single '>=' floor to pin")
    name, version, marker = match.groups()
    return f"{name}=={version}" + (f" ; {marker[1:].strip()}" if marker else "")


def floors_text() -> str:
    """What constraints/floors.txt must contain."""
    return HEADER + "".join(floor_pin(r) + "\n" for r in requirements())


def main(argv: list[str]) -> int:
    expected = floors_text()
    if argv == ["--check"]:
        if FLOORS.exists() and FLOORS.read_text() == expected:
            return 0
        print(f"{FLOORS.relative_to(ROOT)} is out of step with pyproject.toml: run python scripts/floors.py",
              file=sys.stderr)
        return 1
    if argv:
        raise SystemExit(f"usage: python scripts/floors.py [--check], got {argv}")
    FLOORS.parent.mkdir(exist_ok=True)
    FLOORS.write_text(expected)
    print(f"wrote {FLOORS.relative_to(ROOT)}: {len(expected.splitlines()) - 2} floors")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

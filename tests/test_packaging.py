"""pyproject.toml, environment.yml and constraints/floors.txt name the same requirements and floors; the wheel
carries data/."""

import importlib.util
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: tomllib is new in 3.11 (pyproject's test extra brings tomli there)
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch"}  # PyPI name -> conda-forge name where they differ


def parse(requirement: str) -> tuple[str, str]:
    """('name', '>=floor') from 'name>=floor' or 'name>=floor=*build*' (conda); the build string is dropped."""
    match = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*((?:>=|==)[0-9][^=,;\s]*)?.*", requirement.strip())
    assert match, f"cannot parse requirement {requirement!r}"
    return match.group(1).lower().replace("-", "_"), match.group(2) or ""


def pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    reqs = project["dependencies"] + extras["test"] + [r for r in extras["dev"] if not r.startswith("course_lib")]
    return dict(parse(r) for r in reqs)


def conda_requirements() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "defaults" not in env["channels"] and "conda-forge" in env["channels"]
    reqs = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):  # the pip section
            assert "-e ." in dep["pip"], "environment.yml must install course_lib itself (-e .)"
            reqs |= dict(parse(r) for r in dep["pip"] if not r.startswith("-"))
        elif not dep.startswith(("python", "pip")):
            reqs.update([parse(dep)])
    torch = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("pytorch")]
    assert torch and "cpu" in torch[0], "environment.yml must ask for a CPU pytorch build"
    return reqs


def test_environment_yml_matches_pyproject():
    pyproject = pyproject_requirements()
    conda = conda_requirements()
    expected = {CONDA_NAMES.get(name, name): floor for name, floor in pyproject.items()}
    assert conda == expected


def floors_script():
    """scripts/floors.py as a module."""
    spec = importlib.util.spec_from_file_location("floors", ROOT / "scripts" / "floors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_floors_constraints_pin_every_requirement_at_its_floor():
    lines = [line for line in (ROOT / "constraints" / "floors.txt").read_text().splitlines()
             if line and not line.startswith("#")]
    pins = dict(parse(line.split(";")[0]) for line in lines)
    assert pins == {name: "==" + floor.removeprefix(">=") for name, floor in pyproject_requirements().items()}, (
        "constraints/floors.txt is out of step with pyproject.toml: run python scripts/floors.py")
    assert (ROOT / "constraints" / "floors.txt").read_text() == floors_script().floors_text()
    assert "tomli==2.0 ; python_version < '3.11'" in lines  # a requirement's environment marker is kept


def test_floors_script_refuses_a_requirement_without_a_floor():
    script = floors_script()
    assert script.floor_pin("numpy >= 1.24") == "numpy==1.24"
    for bad in ("numpy", "numpy>=1.24,<3", "numpy<3"):
        with pytest.raises(ValueError, match="no single '>=' floor"):
            script.floor_pin(bad)


def test_no_exact_pins_in_the_package_requirements():
    assert all(not floor.startswith("==") for floor in pyproject_requirements().values())


def test_wheel_carries_the_data_and_finds_it(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(ROOT)], check=True)
    (wheel,) = tmp_path.glob("course_lib-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    sums = (ROOT / "data" / "SHA256SUMS").read_text().split()[1::2]
    for name in sums + ["SHA256SUMS", "README.md"]:
        assert f"course_lib/_data/{name}" in names, f"the wheel lacks data/{name}"
    # Installed from the wheel (unpacked into an empty folder), course_lib finds and verifies its data.
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    code = ("import course_lib.paths as p; from course_lib.text.spam import load_spam; "
            "print(p.data_dir()); print(len(load_spam('test')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(target)},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(target / "course_lib" / "_data"), "907"]

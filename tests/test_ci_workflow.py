"""The GitHub workflow runs exactly README's test command, on ubuntu with Python 3.11, with the venv cached on
pyproject.toml. README's command is read from README itself, so README and CI cannot drift apart."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "course.yml"


def readme_test_command() -> str:
    """The indented command that follows README's "Run every test" sentence in the quick start."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"^Run every test\b.*?\n\n((?: {4}\S[^\n]*\n)+)", readme, re.M | re.S)
    assert match, "README's quick start lost its 'Run every test' command"
    lines = [line.strip() for line in match.group(1).splitlines()]
    assert len(lines) == 1, f"README's test command should be one line, found {lines}"
    return lines[0]


def workflow() -> dict:
    data = yaml.safe_load(WORKFLOW.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def test_readme_command_is_the_one_we_expect():
    assert readme_test_command() == "bash scripts/course.sh test"


def test_the_workflow_runs_readmes_command_and_only_it():
    (job,) = workflow()["jobs"].values()
    runs = [step["run"].strip() for step in job["steps"] if "run" in step]
    assert runs == [readme_test_command()]


def test_ubuntu_python_311_and_a_venv_cache_keyed_on_pyproject():
    data = workflow()
    assert {"push", "pull_request"} <= set(data["on"])
    (job,) = data["jobs"].values()
    assert job["runs-on"].startswith("ubuntu")
    steps = job["steps"]
    uses = [step.get("uses", "").split("@")[0] for step in steps]
    assert uses[0] == "actions/checkout"
    python = steps[uses.index("actions/setup-python")]
    assert str(python["with"]["python-version"]) == "3.11"
    cache = steps[uses.index("actions/cache")]
    assert cache["with"]["path"] == ".venv"
    key = cache["with"]["key"]
    assert "hashFiles('pyproject.toml')" in key
    assert f"steps.{python['id']}.outputs.python-version" in key, "a venv points at its Python: key on its version"
    run_index = next(i for i, step in enumerate(steps) if "run" in step)
    assert uses.index("actions/setup-python") < uses.index("actions/cache") < run_index, \
        "Python, then the cache, then the tests"

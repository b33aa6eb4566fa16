"""One setting names the repository (pyproject.toml's [project.urls] Repository); every notebook's Colab badge and
install line, and README, follow it; `course.sh publish ORG/REPO` rewrites only those strings.

Publishing is tried on copies in a temporary folder: the real notebooks are only read here.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_lib.publishing import repository as publish

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
NEW = "acme-org/nlp.course_2"


def setting() -> str:
    url = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    assert url.startswith("https://github.com/")
    return url.removeprefix("https://github.com/")


def test_the_setting_is_read_as_toml_reads_it():
    assert publish.repository_slug(ROOT) == setting()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_notebook_badge_and_install_line_follow_the_setting(path):
    """Fails when a notebook's badge (slug, branch or its own file name) or install line disagrees with the setting,
    or when the first cell has no badge or the setup cell no install line."""
    wrong = publish.notebook_disagreements(path, setting())
    assert wrong == [], "\n".join(map(str, wrong)) + "\nrun: bash scripts/course.sh publish"


def test_readme_names_the_repository_of_the_setting():
    assert f"https://github.com/{setting()}" in (ROOT / "README.md").read_text()
    assert publish.disagreements(ROOT) == []


def copy_checkout(tmp_path: Path) -> Path:
    """What publish reads and writes: pyproject.toml, README.md, notebooks/*.ipynb."""
    root = tmp_path / "checkout"
    (root / "notebooks").mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, root / name)
    for path in NOTEBOOKS:
        shutil.copy2(path, root / "notebooks" / path.name)
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_publishing_the_same_slug_leaves_every_file_byte_identical(tmp_path):
    root = copy_checkout(tmp_path)
    before = snapshot(root)
    assert publish.publish(root) == [] and publish.publish(root, setting()) == []
    assert snapshot(root) == before
    for path in NOTEBOOKS:  # and the text rewrite itself is the identity on every committed notebook
        text = path.read_text()
        assert publish.rewrite_notebook_text(text, setting(), path.name) == text


def test_publishing_a_new_slug_changes_only_the_badge_install_line_and_setting(tmp_path):
    root = copy_checkout(tmp_path)
    before = snapshot(root)
    changed = publish.publish(root, NEW)
    assert sorted(p.name for p in changed) == sorted(["pyproject.toml", "README.md", *[p.name for p in NOTEBOOKS]])
    assert publish.repository_slug(root) == NEW and publish.disagreements(root) == []
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    assert pyproject["project"]["urls"]["Repository"] == f"https://github.com/{NEW}"
    old_lines = before["pyproject.toml"].decode().splitlines()
    new_lines = (root / "pyproject.toml").read_text().splitlines()
    assert [(a, b) for a, b in zip(old_lines, new_lines) if a != b] == [
        (f'Repository = "https://github.com/{setting()}"', f'Repository = "https://github.com/{NEW}"')]
    assert f"https://github.com/{NEW}" in (root / "README.md").read_text()
    for path in NOTEBOOKS:
        old = nbformat.reads(before[f"notebooks/{path.name}"].decode(), as_version=4)
        text = (root / "notebooks" / path.name).read_text()
        new = nbformat.reads(text, as_version=4)
        assert text == nbformat.writes(new) + "\n", "laid out as nbformat writes it"
        assert f"colab.research.google.com/github/{NEW}/blob/main/notebooks/{path.name}" in new.cells[0].source
        assert f"git+https://github.com/{NEW}" in next(c for c in new.cells if c.cell_type == "code").source
        assert [c.get("outputs") for c in new.cells] == [c.get("outputs") for c in old.cells], "outputs kept"
        assert new.metadata == old.metadata
        changed_cells = [i for i, (a, b) in enumerate(zip(old.cells, new.cells)) if a != b]
        assert 1 <= len(changed_cells) <= 2 and changed_cells[0] == 0
        for i in changed_cells:  # putting the old slug back gives the old source: nothing else changed
            assert new.cells[i].source.replace(NEW, setting()) == old.cells[i].source
    # Publishing the old slug again restores every file byte for byte.
    publish.publish(root, setting())
    assert snapshot(root) == before


def test_a_stray_badge_or_install_line_is_reported_then_fixed(tmp_path):
    root = copy_checkout(tmp_path)
    path = root / "notebooks" / NOTEBOOKS[0].name
    text = path.read_text()
    slug = setting()
    broken = (text.replace(f"github/{slug}/blob/main/notebooks/{path.name}",
                           "github/someone/else/blob/dev/notebooks/x.ipynb")
              .replace(f"git+https://github.com/{slug}", "git+https://github.com/someone/else.git@v1"))
    assert broken != text
    path.write_text(broken)
    found = [str(d) for d in publish.disagreements(root)]
    assert len(found) == 2 and "someone/else/blob/dev" in found[0]
    assert "git+https://github.com/someone/else" in found[1]
    assert publish.main(["--check", "--root", str(root)]) == 1
    publish.publish(root)
    assert publish.disagreements(root) == []
    assert path.read_text() == text.replace(f"git+https://github.com/{slug}", f"git+https://github.com/{slug}.git@v1")


def test_a_notebook_without_badge_or_install_line_disagrees(tmp_path):
    root = copy_checkout(tmp_path)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 99 · new\n\nno badge"),
                                         nbformat.v4.new_code_cell("from course_lib.runtime import setup")])
    nbformat.write(nb, root / "notebooks" / "99_new.ipynb")
    found = [str(d) for d in publish.disagreements(root)]
    assert found == [f"{root / 'notebooks' / '99_new.ipynb'}: 'cell 0: no Open-in-Colab badge', "
                     f"expected '{publish.colab_url(setting(), '99_new.ipynb')}'",
                     f"{root / 'notebooks' / '99_new.ipynb'}: 'cell 1 (the setup cell): no install line', "
                     f"expected 'git+https://github.com/{setting()}'"]


def test_other_projects_urls_are_left_alone(tmp_path):
    """Prose that installs another project, or a Colab link that is not the badge, is not the course's to rewrite."""
    root = copy_checkout(tmp_path)
    nb = nbformat.read(NOTEBOOKS[0], as_version=4)
    prose = ("Optional: `pip install git+https://github.com/jessevig/bertviz`, or open "
             "[their demo](https://colab.research.google.com/github/jessevig/bertviz/blob/master/demo.ipynb).")
    code = "# !pip install git+https://github.com/huggingface/transformers"
    nb.cells.insert(3, nbformat.v4.new_markdown_cell(prose))
    nb.cells.insert(4, nbformat.v4.new_code_cell(code))
    path = root / "notebooks" / NOTEBOOKS[0].name
    nbformat.write(nb, path)
    assert publish.disagreements(root) == []
    publish.publish(root, NEW)
    cells = nbformat.read(path, as_version=4).cells
    assert (cells[3].source, cells[4].source) == (prose, code) and publish.disagreements(root) == []


@pytest.mark.parametrize("slug", ["acme", "acme/", "/repo", "acme/repo/x", "-acme/repo", "acme-/repo", "ac--me/repo",
                                  "acme/repo.git", "acme/..", "acme/re po", "a" * 40 + "/repo", "acme/r\"epo",
                                  "https://github.com/acme/repo"])
def test_a_slug_that_is_not_org_repo_is_refused_and_nothing_is_written(tmp_path, slug, capsys):
    root = copy_checkout(tmp_path)
    before = snapshot(root)
    assert publish.main(["--root", str(root), "--", slug]) == 2
    err = capsys.readouterr().err
    assert "is not ORG/REPO" in err or "not allowed" in err
    assert snapshot(root) == before


def test_valid_slugs():
    for slug in ("OWNER/REPO", "a/b", "my-org/transfer_learning.course", "a" * 39 + "/" + "r" * 100):
        assert publish.check_slug(slug) == slug


def test_course_sh_publish_rewrites_a_copy(tmp_path):
    """The command itself, on a copy of the checkout (course.sh works on the folder above its own)."""
    root = copy_checkout(tmp_path)
    (root / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "course.sh", root / "scripts" / "course.sh")
    (root / "course_lib" / "publishing").mkdir(parents=True)
    for name in ("__init__.py", "publishing/__init__.py", "publishing/repository.py"):
        shutil.copy2(ROOT / "course_lib" / name, root / "course_lib" / name)
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "VIRTUAL_ENV": str(Path(sys.executable).parents[1]), "PATH": bin_dir + os.pathsep +
           os.environ["PATH"], "PYTHONPATH": ""}
    run = subprocess.run(["bash", str(root / "scripts" / "course.sh"), "publish", "acme/course"], cwd=tmp_path,
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "repository: https://github.com/acme/course" in run.stdout
    first = "".join(json.loads((root / "notebooks" / NOTEBOOKS[0].name).read_text())["cells"][0]["source"])
    assert first.count(f"github/acme/course/blob/main/notebooks/{NOTEBOOKS[0].name}") == 1
    bad = subprocess.run(["bash", "scripts/course.sh", "publish", "not a slug"], cwd=root, env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "is not ORG/REPO" in bad.stderr
    check = subprocess.run(["bash", "scripts/course.sh", "publish", "--check"], cwd=root, env=env,
                           capture_output=True, text=True)
    assert check.returncode == 0 and "0 disagreement(s) with https://github.com/acme/course" in check.stdout

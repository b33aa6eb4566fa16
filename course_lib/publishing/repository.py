"""One place names the course's repository: ``[project.urls] Repository`` in ``pyproject.toml``.

    bash scripts/course.sh publish your-org/your-repo   # set it, and rewrite every notebook and README to match
    python -m course_lib.publishing.repository --check                # list what disagrees with it (exit 1), change nothing

Generated from that setting (``https://github.com/OWNER/REPO`` until the course is published):

- each notebook's "Open in Colab" badge:
  ``https://colab.research.google.com/github/OWNER/REPO/blob/main/notebooks/<the notebook's own file name>``;
- each notebook's install line (the setup cell, for Colab): ``git+https://github.com/OWNER/REPO``;
- README's mentions of ``https://github.com/OWNER/REPO``.

A rewrite works on the file's text: only those strings change (no re-execution, outputs, ids and JSON layout kept
byte for byte), and a file that already agrees is not written at all. Only the standard library is needed, so this
runs before the environment is set up (``course.sh publish`` runs it with the checkout on ``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

BRANCH = "main"  # the badges open the notebooks on this branch
PLACEHOLDER = "OWNER/REPO"
# GitHub's rules: an owner is 1-39 letters, digits or inner hyphens; a repository name letters, digits, '.', '_', '-'.
SLUG = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}/[A-Za-z0-9._-]{1,100}")
_SLUG_TEXT = r"[A-Za-z0-9-]+/[A-Za-z0-9._-]+?"  # what a rewrite replaces, valid or not (a placeholder too)
# The badge's whole link target (slug, branch and path are all generated), where the badge's picture links to it:
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](<target>). Other Colab links stay.
BADGE = re.compile(r"(?<=colab-badge\.svg\)\]\()"
                   r"https://colab\.research\.google\.com/github/[A-Za-z0-9-]+/[A-Za-z0-9._-]+/blob/[^\s)\"\\]+")
# The install line: the slug after git+https://github.com/ at the start of a string literal ("git+... or 'git+...;
# in the file's JSON text the quote is escaped, \"git+...); a .git suffix, @ref or #egg= that follows is kept.
# A URL in prose (pip install git+https://github.com/other/project) is not an install line of the course.
INSTALL = re.compile(r"(?<=[\"'])(git\+https://github\.com/)(" + _SLUG_TEXT + r")(?=\.git\b|[@#\"'\\\s]|$)")
# pyproject.toml's setting, inside [project.urls].
_URLS_TABLE = re.compile(r"^\[project\.urls\]\s*$(?P<body>.*?)(?=^\[|\Z)", re.M | re.S)
_REPOSITORY = re.compile(r'^(?P<head>Repository\s*=\s*")https://github\.com/(?P<slug>[^"]*)(?P<tail>")', re.M)


def check_slug(slug: str) -> str:
    """``slug`` when it names a GitHub repository as ORG/REPO; ValueError saying what is wrong otherwise."""
    if not isinstance(slug, str) or not SLUG.fullmatch(slug):
        raise ValueError(f"{slug!r} is not ORG/REPO (e.g. my-org/transfer-learning-course): letters, digits and "
                         "hyphens for the owner (at most 39, no leading, trailing or double hyphen); letters, "
                         "digits, '.', '_' and '-' for the repository")
    repo = slug.split("/")[1]
    if repo in (".", "..") or repo.lower().endswith(".git"):
        raise ValueError(f"{slug!r}: the repository name {repo!r} is not allowed (no '.git' suffix)")
    return slug


def repository_slug(root: Path) -> str:
    """ORG/REPO from ``[project.urls] Repository`` in ``root/pyproject.toml``."""
    pyproject = Path(root) / "pyproject.toml"
    table = _URLS_TABLE.search(pyproject.read_text(encoding="utf-8"))
    match = _REPOSITORY.search(table.group("body")) if table else None
    if match is None:
        raise ValueError(f'{pyproject} has no [project.urls] Repository = "https://github.com/ORG/REPO"')
    return match.group("slug")


def colab_url(slug: str, notebook: str) -> str:
    """The "Open in Colab" link of ``notebooks/<notebook>`` in repository ``slug``."""
    return f"https://colab.research.google.com/github/{slug}/blob/{BRANCH}/notebooks/{notebook}"


def install_url(slug: str) -> str:
    """What the setup cell pip-installs on Colab."""
    return f"git+https://github.com/{slug}"


def rewrite_notebook_text(text: str, slug: str, notebook: str) -> str:
    """The notebook's JSON text with every badge link and install line generated from ``slug``; nothing else changes.

    Slugs hold no character that JSON escapes, so the strings are replaced in the file's text, which keeps its layout.
    """
    text = BADGE.sub(lambda m: colab_url(slug, notebook), text)
    return INSTALL.sub(lambda m: m.group(1) + slug, text)


def rewrite_readme_text(text: str, old: str, slug: str) -> str:
    """README with ``https://github.com/<old>`` (and Colab links to it) pointing at ``slug``."""
    pattern = re.compile(r"(github\.com/|colab\.research\.google\.com/github/)" + re.escape(old) + r"(?![\w.-])")
    return pattern.sub(lambda m: m.group(1) + slug, text)


def rewrite_pyproject_text(text: str, slug: str) -> str:
    """pyproject.toml with ``[project.urls] Repository`` set to ``https://github.com/<slug>``; the rest as it was."""
    table = _URLS_TABLE.search(text)
    if table is None or not _REPOSITORY.search(table.group("body")):
        raise ValueError('pyproject.toml has no [project.urls] Repository = "https://github.com/ORG/REPO"')
    body = _REPOSITORY.sub(lambda m: f"{m.group('head')}https://github.com/{slug}{m.group('tail')}",
                           table.group("body"), count=1)
    return text[:table.start("body")] + body + text[table.end("body"):]


@dataclass(frozen=True)
class Disagreement:
    """One string that does not follow the setting: where, what it says, what the setting makes of it."""

    path: Path
    found: str
    expected: str

    def __str__(self) -> str:
        return f"{self.path}: {self.found!r}, expected {self.expected!r}"


def notebooks(root: Path) -> list[Path]:
    """Every course notebook: ``notebooks/*.ipynb``."""
    return sorted((Path(root) / "notebooks").glob("*.ipynb"))


def notebook_disagreements(path: Path, slug: str) -> list[Disagreement]:
    """What in one notebook disagrees with ``slug``: its badges (in markdown cells), its install lines (in code
    cells), and a missing badge in the first cell or a missing install line in the first code cell."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    wrong: list[Disagreement] = []
    want_badge, want_install = colab_url(slug, path.name), install_url(slug)
    first_code = next((c for c in cells if c["cell_type"] == "code"), None)
    for index, cell in enumerate(cells):
        source = "".join(cell["source"])
        badges = BADGE.findall(source) if cell["cell_type"] == "markdown" else []
        installs = [m.group(1) + m.group(2) for m in INSTALL.finditer(source)] if cell["cell_type"] == "code" else []
        wrong += [Disagreement(path, f"cell {index}: {found}", want_badge) for found in badges if found != want_badge]
        wrong += [Disagreement(path, f"cell {index}: {found}", want_install) for found in installs
                  if found != want_install]
        if index == 0 and not (cell["cell_type"] == "markdown" and badges):
            wrong.append(Disagreement(path, "cell 0: no Open-in-Colab badge", want_badge))
        if cell is first_code and not installs:
            wrong.append(Disagreement(path, f"cell {index} (the setup cell): no install line", want_install))
    return wrong


def disagreements(root: Path) -> list[Disagreement]:
    """Everything under ``root`` that does not follow the setting: notebooks, and README not naming the repository."""
    root = Path(root)
    slug = repository_slug(root)
    wrong = [d for path in notebooks(root) for d in notebook_disagreements(path, slug)]
    readme = root / "README.md"
    if f"https://github.com/{slug}" not in readme.read_text(encoding="utf-8"):
        wrong.append(Disagreement(readme, "no mention of the repository", f"https://github.com/{slug}"))
    return wrong


def publish(root: Path, slug: str | None = None) -> list[Path]:
    """Set the repository to ``slug`` (None: keep the setting) and rewrite what follows from it; the files changed."""
    root = Path(root)
    old = repository_slug(root)
    slug = check_slug(slug) if slug is not None else old
    changed: list[Path] = []

    def write(path: Path, before: str, after: str) -> None:
        if after != before:
            path.write_text(after, encoding="utf-8")
            changed.append(path)

    pyproject = root / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    write(pyproject, text, rewrite_pyproject_text(text, slug))
    for path in notebooks(root):
        text = path.read_text(encoding="utf-8")
        after = rewrite_notebook_text(text, slug, path.name)
        if after != text:
            _same_except_sources(text, after, path)
        write(path, text, after)
    readme = root / "README.md"
    text = readme.read_text(encoding="utf-8")
    write(readme, text, rewrite_readme_text(text, old, slug))
    return changed


def _same_except_sources(before: str, after: str, path: Path) -> None:
    """Refuse a rewrite that would touch anything but cells' sources (outputs, metadata) or break the JSON."""
    old, new = json.loads(before), json.loads(after)
    for cell in old["cells"] + new["cells"]:
        cell.pop("source")
    if old != new:
        raise ValueError(f"{path}: the rewrite would change more than the badge and install line; nothing written")


def main(argv: list[str] | None = None) -> int:
    """Command line: 0 done (or, with --check, nothing disagrees); 1 with --check when something does; 2 bad input."""
    parser = argparse.ArgumentParser(prog="bash scripts/course.sh publish", description=__doc__.split("\n")[0])
    parser.add_argument("slug", nargs="?", help="ORG/REPO on GitHub; omitted: rewrite from the current setting")
    parser.add_argument("--check", action="store_true", help="only list what disagrees with the setting")
    parser.add_argument("--root", type=Path, default=Path("."), help="the checkout (default: the current folder)")
    options = parser.parse_args(argv)
    try:
        if options.check:
            if options.slug:
                raise ValueError("--check takes no ORG/REPO: it compares with the setting in pyproject.toml")
            wrong = disagreements(options.root)
            for item in wrong:
                print(item)
            print(f"{len(wrong)} disagreement(s) with https://github.com/{repository_slug(options.root)}")
            return 1 if wrong else 0
        changed = publish(options.root, options.slug)
    except (ValueError, OSError) as exc:
        print(f"publish: {exc}", file=sys.stderr)
        return 2
    slug = repository_slug(options.root)
    print(f"repository: https://github.com/{slug}; {len(changed)} file(s) rewritten"
          + "".join(f"\n  {path}" for path in changed))
    return 0


if __name__ == "__main__":
    sys.exit(main())

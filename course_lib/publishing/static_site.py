"""A static HTML site of the executed notebooks, to read without running: ``bash scripts/course.sh site``.

    python -m course_lib.publishing.static_site [--notebooks notebooks] [--out site]

writes ``site/index.html`` (the notebooks in course order, by their number) and one page per notebook, converted by
nbconvert's ``lab`` template from the committed outputs (nothing is executed), with links to the previous and next
notebook and to the index at the top and bottom of every page. Open ``site/index.html``, or serve the folder
(GitHub Pages, any web server).

What a page holds differs from the notebook in four ways, all for a reader without a kernel or a network:

- every bertviz view shows its stored static picture (``course-viz-fallback``), with a hint that fits a web page; the
  view's script is left out, so a page asks no CDN for bertviz's JavaScript and never shows an empty box;
- the "Open in Colab" badge is a local picture (``colab-badge.svg``) that links to Colab as before;
- links to another course notebook (``02_bert.ipynb``) point at its page (``02_bert.html``);
- every formula of a markdown cell is typeset when the site is built, as MathML that the browser draws (``site_math``):
  no MathJax, no CDN; a formula that cannot be converted shows its TeX source, and the build says how many did.

Every picture is in the page (data URIs) or next to it, so a page reads the same offline. A code line too long for its
box wraps inside it, as outputs do.
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

FALLBACK = re.compile(r'<div[^>]*\bclass="course-viz-fallback"[^>]*>.*?</div></div>', re.S)
HINT = re.compile(r'(<div class="course-viz-hint"[^>]*>)(.*?)(</div>)', re.S)
SITE_HINT = "Static picture of an interactive view: open the notebook in Jupyter or Colab to explore it."
COLAB_BADGE_URL = "https://colab.research.google.com/assets/colab-badge.svg"
COLAB_BADGE_FILE = "colab-badge.svg"
REQUIREJS_TAG = re.compile(r'<script src="[^"]*require(?:\.min)?\.js"></script>\s*')
NOTEBOOK_LINK = re.compile(r'href="(\d\d_[\w-]+)\.ipynb([#"])')
NAV_CLASS = "course-nav"
STYLE = """<style>
.course-nav { display: flex; justify-content: space-between; gap: 1em; max-width: 1100px; margin: 0.5em auto;
  padding: 0.5em 1em; font-family: sans-serif; font-size: 14px; border: 1px solid #ddd; border-radius: 4px; }
.course-nav a { text-decoration: none; } .course-nav span { color: #999; }
.jp-InputArea-editor pre { white-space: pre-wrap; overflow-wrap: anywhere; }
math { font-family: "STIX Two Math", "Cambria Math", "Latin Modern Math", math, "DejaVu Serif", serif;
  font-size: 1.15em; }
math[display="block"] { margin: 0.8em 0; overflow-x: auto; overflow-y: hidden; }
code.course-tex { white-space: pre-wrap; }
</style>"""
# A local stand-in for Colab's badge (the same words and colours), so that every picture of the site is present.
BADGE_SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="117" height="20" role="img" aria-label="Open in Colab">
<rect width="117" height="20" rx="3" fill="#555"/><rect x="46" width="71" height="20" rx="3" fill="#f9ab00"/>
<rect x="46" width="4" height="20" fill="#f9ab00"/>
<g fill="#fff" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">
<text x="6" y="14">Open in</text><text x="53" y="14">Colab</text></g></svg>
"""


@dataclass(frozen=True)
class Built:
    """What the build did to one page: views shown as static pictures, formulas typeset and shown as TeX."""

    views: int
    formulas: int
    as_tex: list[str]


@dataclass(frozen=True)
class Page:
    """One notebook of the site: its source, its page's file name and its title (the first heading)."""

    notebook: Path
    name: str
    title: str


def pages(folder: Path) -> list[Page]:
    """The notebooks of ``folder`` in course order (their file names start with the lecture's number)."""
    found = []
    for path in sorted(Path(folder).glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        first = nb.cells[0].source if nb.cells and nb.cells[0].cell_type == "markdown" else ""
        heading = next((line[2:].strip() for line in first.splitlines() if line.startswith("# ")), path.stem)
        found.append(Page(path, f"{path.stem}.html", heading))
    return found


def for_readers(nb: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, int]:
    """The notebook as the site shows it: each output holding a static picture keeps only its picture(s), with the
    site's hint; returns the notebook and the number of views so replaced. An output with a script but no picture
    stops the build (it would be an empty box)."""
    replaced = 0
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            data = output.get("data", {})
            page = "".join(data.get("text/html", ""))
            pictures = FALLBACK.findall(page)
            if pictures:
                data["text/html"] = "".join(HINT.sub(lambda m: m.group(1) + html.escape(SITE_HINT) + m.group(3), p)
                                            for p in pictures)
                replaced += 1
            elif "<script" in page:
                raise ValueError(f"cell {index}: an output with a script and no static picture would be an empty box")
    return nb, replaced


def nav(pages_: list[Page], index: int) -> str:
    """Previous / contents / next links for page ``index``."""
    def link(i: int, rel: str, arrow: str) -> str:
        if not 0 <= i < len(pages_):
            return "<span></span>"
        text = f"{pages_[i].title} {arrow}" if rel == "next" else f"{arrow} {pages_[i].title}"
        return f'<a rel="{rel}" href="{pages_[i].name}">{html.escape(text)}</a>'

    return (f'<nav class="{NAV_CLASS}">{link(index - 1, "prev", "←")}<a href="index.html">Contents</a>'
            f'{link(index + 1, "next", "→")}</nav>')


def notebook_page(pages_: list[Page], index: int) -> tuple[str, Built]:
    """The HTML page of notebook ``index``, and its views and formulas."""
    from course_lib.publishing.site_math import MathMLExporter

    page = pages_[index]
    nb, replaced = for_readers(nbformat.read(page.notebook, as_version=4))
    exporter = MathMLExporter(template_name="lab")
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": page.title}})
    body = REQUIREJS_TAG.sub("", body, count=1)  # nothing on the page needs require.js once the views are pictures
    body = body.replace(f'src="{COLAB_BADGE_URL}"', f'src="{COLAB_BADGE_FILE}"')
    body = NOTEBOOK_LINK.sub(lambda m: f'href="{m.group(1)}.html{m.group(2)}', body)
    bar = nav(pages_, index)
    body = body.replace("</head>", STYLE + "\n</head>", 1)
    body = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + "\n" + bar, body, count=1)
    body = body.replace("</body>", bar + "\n</body>", 1)
    return body, Built(replaced, exporter.tally.typeset, exporter.tally.failed)


def index_page(pages_: list[Page], intro: str = "") -> str:
    """The contents: every notebook in course order, with its title."""
    items = "\n".join(f'<li><a href="{p.name}">{html.escape(p.title)}</a></li>' for p in pages_)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Transfer learning in NLP: the notebooks</title>
<style>body {{ font-family: sans-serif; max-width: 900px; margin: 2em auto; padding: 0 1em; line-height: 1.5; }}
li {{ margin: 0.4em 0; }}</style></head>
<body>
<h1>Transfer learning in NLP: the notebooks</h1>
{intro}
<p>Each page is a notebook as committed, executed, with its outputs: read it here, or open it in Jupyter or Colab to
run it.</p>
<ol class="course-index">
{items}
</ol>
</body></html>
"""


def readme_intro(readme: Path) -> str:
    """README's first paragraph as HTML (empty when there is no README)."""
    if not readme.is_file():
        return ""
    from nbconvert.filters.markdown import markdown2html

    paragraphs = [p for p in readme.read_text(encoding="utf-8").split("\n\n") if p.strip() and not p.startswith("#")]
    return markdown2html(paragraphs[0]) if paragraphs else ""


def build(notebooks: Path, out: Path, readme: Path | None = None) -> dict[str, Built]:
    """Write the site to ``out`` (emptied first); returns page name -> its views and formulas."""
    pages_ = pages(notebooks)
    if not pages_:
        raise ValueError(f"no notebooks in {notebooks}")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    built = {}
    for index, page in enumerate(pages_):
        body, built[page.name] = notebook_page(pages_, index)
        (out / page.name).write_text(body, encoding="utf-8")
    (out / "index.html").write_text(index_page(pages_, readme_intro(readme) if readme else ""), encoding="utf-8")
    (out / COLAB_BADGE_FILE).write_text(BADGE_SVG, encoding="utf-8")
    return built


def main(argv: list[str] | None = None) -> int:
    """Command line: 0 when the site was written, 2 when it could not be."""
    parser = argparse.ArgumentParser(prog="bash scripts/course.sh site", description=__doc__.split("\n")[0])
    parser.add_argument("--notebooks", type=Path, default=Path("notebooks"), help="default: notebooks/")
    parser.add_argument("--out", type=Path, default=Path("site"), help="the site's folder, emptied first (site/)")
    options = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        built = build(options.notebooks, options.out, Path("README.md"))
    except (ValueError, OSError) as exc:
        print(f"site: {exc}", file=sys.stderr)
        return 2
    for name, page in built.items():
        print(f"  {name:<32} {page.views} view(s) as static pictures, {page.formulas} formula(s) typeset"
              + (f", {len(page.as_tex)} shown as TeX: {'; '.join(page.as_tex)}" if page.as_tex else ""))
    as_tex = sum(len(page.as_tex) for page in built.values())
    print(f"wrote {options.out}/index.html and {len(built)} page(s) in {time.perf_counter() - start:.1f} s; "
          f"{as_tex} formula(s) latex2mathml could not convert" + (" (shown as TeX)" if as_tex else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`course.sh site`: a static HTML site of the executed notebooks, built into a temporary folder and checked.

Every page exists, the index lists every notebook in course order, prev/next links chain them, every link between
pages resolves, every picture is in the page or next to it (nothing fetched from elsewhere), and every bertviz view
shows its stored static picture with no script left to leave an empty box. Every formula of a markdown cell is
MathML (no MathJax, no CDN), and only those: a ``$`` in code, a code span or an output stays as it is. A headless
Chromium opens every page with the network closed when Debian's Chromium and playwright are present (skipped
otherwise, as tests/browser/ is): the formulas are typeset and no code line runs past its box at 1280 px.
"""

import base64
import os
import re
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest

pytest.importorskip("nbconvert", reason="nbconvert comes with the dev extra (jupyterlab)")
pytest.importorskip("latex2mathml", reason="latex2mathml comes with the dev extra")

from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath  # noqa: E402

from course_lib.publishing import site_math  # noqa: E402
from course_lib.publishing import static_site as site  # noqa: E402  (after the skip: it converts with nbconvert)

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CHROMIUM = Path(os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium"))


class Tags(HTMLParser):
    """The attributes of every <a>, <img> and <script> of a page, and the text of its <title>."""

    def __init__(self):
        super().__init__()
        self.links, self.images, self.scripts, self.title, self._in_title = [], [], [], "", False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and "href" in attrs:
            self.links.append(attrs)
        elif tag == "img":
            self.images.append(attrs)
        elif tag == "script":
            self.scripts.append(attrs)
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data


class Formulas(IPythonRenderer):
    """Collects the formulas nbconvert's markdown parser finds (what MathJax would have typeset in JupyterLab)."""

    def __init__(self):
        super().__init__(escape=False)
        self.found = []

    def block_math(self, body):
        self.found.append(body)
        return ""

    inline_math = block_math


def formulas(path: Path) -> list[str]:
    renderer = Formulas()
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "markdown":
            MarkdownWithMath(renderer=renderer).render(cell.source)
    return renderer.found


def parse(path: Path) -> Tags:
    tags = Tags()
    tags.feed(path.read_text(encoding="utf-8"))
    return tags


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "site"
    start = time.perf_counter()
    built = site.build(ROOT / "notebooks", out, ROOT / "README.md")
    print(f"\nsite: {len(built)} pages in {time.perf_counter() - start:.1f} s")
    return out, built


def test_a_page_per_notebook_and_an_index_in_course_order(built):
    out, _ = built
    assert sorted(p.name for p in out.glob("*.html")) == sorted(["index.html"] + [f"{p.stem}.html" for p in NOTEBOOKS])
    index = parse(out / "index.html")
    listed = [a["href"] for a in index.links]
    assert listed == [f"{p.stem}.html" for p in NOTEBOOKS], "every notebook, in the order of its number"
    for path in NOTEBOOKS:
        title = nbformat.read(path, as_version=4).cells[0].source.splitlines()[0].removeprefix("# ").strip()
        assert parse(out / f"{path.stem}.html").title == title


def test_prev_next_and_contents_links_chain_the_pages(built):
    out, _ = built
    names = [f"{p.stem}.html" for p in NOTEBOOKS]
    for i, name in enumerate(names):
        links = parse(out / name).links
        prev = [a["href"] for a in links if a.get("rel") == "prev"]
        nxt = [a["href"] for a in links if a.get("rel") == "next"]
        assert prev == ([names[i - 1]] * 2 if i > 0 else []), "a prev link at the top and the bottom"
        assert nxt == ([names[i + 1]] * 2 if i + 1 < len(names) else [])
        assert [a["href"] for a in links].count("index.html") == 2


def test_every_link_between_pages_resolves(built):
    out, _ = built
    for page in out.glob("*.html"):
        for link in parse(page).links:
            target = urlparse(link["href"])
            if target.scheme or not target.path:
                continue  # the web (Colab, papers) and anchors in the page
            assert (out / target.path).is_file(), f"{page.name} links to a missing {link['href']}"


def test_every_picture_is_present(built):
    out, _ = built
    magic = {"image/png": b"\x89PNG", "image/jpeg": b"\xff\xd8", "image/svg+xml": b"<"}
    counted = 0
    for page in out.glob("*.html"):
        for image in parse(page).images:
            src = image["src"]
            match = re.fullmatch(r"data:(image/[\w+.-]+);base64,(.+)", src, re.S)
            if match:
                data = base64.b64decode(match.group(2))
                assert len(data) > 100 and data.startswith(magic[match.group(1)]), f"{page.name}: a broken picture"
            else:
                assert not urlparse(src).scheme, f"{page.name}: a picture fetched from elsewhere, {src}"
                assert (out / src).is_file() and (out / src).stat().st_size > 0, f"{page.name}: missing {src}"
            counted += 1
    assert counted >= sum(p.read_text().count('"image/png"') for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_bertviz_view_shows_its_static_picture(built, path):
    out, pages = built
    nb = nbformat.read(path, as_version=4)
    stored = sum("course-viz-fallback" in "".join(o.get("data", {}).get("text/html", ""))
                 for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    page = (out / f"{path.stem}.html").read_text()
    pictures = site.FALLBACK.findall(page)
    assert pages[f"{path.stem}.html"].views == stored and len(pictures) >= stored
    for picture in pictures:
        assert re.search(r'<img [^>]*src="data:image/png;base64,', picture) and site.SITE_HINT in picture
    assert "trust the notebook" not in page.lower(), "Jupyter's hint makes no sense on a web page"
    body = page[page.index("<body"):]
    assert "<script" not in body, "no view's script on the page: nothing can draw an empty box"
    assert "require.min.js" not in page and "bertviz" not in " ".join(s.get("src", "") for s in parse(
        out / f"{path.stem}.html").scripts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_formula_is_typeset_as_mathml_with_no_mathjax(built, path):
    out, pages = built
    page, expected = (out / f"{path.stem}.html").read_text(), formulas(path)
    assert pages[f"{path.stem}.html"].as_tex == [], "latex2mathml converts every formula of the course"
    assert pages[f"{path.stem}.html"].formulas == len(expected) == page.count("<math ") > 0
    assert "mathjax" not in page.lower() and "course-tex\"" not in page
    assert "\\text{" not in page and "$$" not in page, "no formula left as TeX"


def test_only_markdown_math_is_converted_and_a_formula_that_fails_shows_its_tex(tmp_path, capsys):
    markdown = ("# 07 · test\n\nCosts `$5` or \\$5, and $\\mathbf{x}_t$ is a vector:\n\n"
                "$$\\text{loss\\_rate} = \\frac{1}{n}\\sum_i \\ell_i$$\n\n"
                "broken: $\\frac{1}{$ and $\\nosuchcommand{x}$")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(markdown),
                                         nbformat.v4.new_code_cell('price = "$5 and $6"')])
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="$x$ costs $5\n")]
    (tmp_path / "nb").mkdir()
    nbformat.write(nb, tmp_path / "nb" / "07_test.ipynb")
    assert site.main(["--notebooks", str(tmp_path / "nb"), "--out", str(tmp_path / "out")]) == 0
    page = (tmp_path / "out" / "07_test.html").read_text()
    assert page.count("<math ") == 2 and "<mtext>loss_rate</mtext>" in page and "<mfrac>" in page
    assert "<code>$5</code>" in page and "or $5, and" in page, "a code span and an escaped $ are not math"
    assert "$x$ costs $5" in page and "$5 and $6" in page, "outputs and code keep their dollars"
    assert '<code class="course-tex">$\\frac{1}{$</code>' in page
    assert '<code class="course-tex">$\\nosuchcommand{x}$</code>' in page, "a command left as TeX is a failure"
    report = capsys.readouterr().out
    assert "2 formula(s) typeset, 2 shown as TeX" in report and "2 formula(s) latex2mathml could not convert" in report
    assert site_math.to_mathml("x", display=True).startswith('<math xmlns="http://www.w3.org/1998/Math/MathML" '
                                                             'display="block">')


def test_an_output_with_a_script_and_no_picture_stops_the_build(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 07 · test"),
                                         nbformat.v4.new_code_cell("view()")])
    nb.cells[1].outputs = [nbformat.v4.new_output("display_data", data={"text/html": "<div id=v></div><script>"
                                                                                     "draw()</script>"})]
    (tmp_path / "nb").mkdir()
    nbformat.write(nb, tmp_path / "nb" / "07_test.ipynb")
    with pytest.raises(ValueError, match="cell 1: an output with a script and no static picture"):
        site.build(tmp_path / "nb", tmp_path / "out")
    assert site.main(["--notebooks", str(tmp_path / "nb"), "--out", str(tmp_path / "out")]) == 2


def test_links_to_other_notebooks_point_at_their_pages(tmp_path):
    (tmp_path / "nb").mkdir()
    for name, text in (("01_a", "see [the next one](02_b.ipynb#part-2)"), ("02_b", "back to [01](01_a.ipynb)")):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {name}\n\n{text}")])
        nbformat.write(nb, tmp_path / "nb" / f"{name}.ipynb")
    site.build(tmp_path / "nb", tmp_path / "out")
    assert 'href="02_b.html#part-2"' in (tmp_path / "out" / "01_a.html").read_text()
    assert 'href="01_a.html"' in (tmp_path / "out" / "02_b.html").read_text()


@pytest.mark.browser
def test_every_page_loads_in_headless_chromium(built):
    """Every page loads from file:// with the network cut off and asks nothing of it: its pictures decode and show,
    no script fails, the index links to every page, every formula is typeset (fractions stacked, superscripts
    raised, no TeX left in the text) and no code line runs past its box at 1280 px. With COURSE_SITE_SHOTS set to a
    folder, a screenshot of each page's first display formula is saved there."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    out, pages = built
    blocked, errors = [], []
    shots = os.environ.get("COURSE_SITE_SHOTS")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.route(re.compile(r"^https?://"), lambda route: (blocked.append(route.request.url),
                                                                     route.abort()))
            page = context.new_page()
            page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
            page.on("console", lambda message: errors.append(f"{page.url}: {message.text}")
                    if message.type == "error" and not message.location.get("url", "").startswith("http")
                    and "net::ERR_FAILED" not in message.text else None)
            page.goto((out / "index.html").as_uri(), wait_until="load")
            hrefs = page.eval_on_selector_all("ol.course-index a", "links => links.map(a => a.getAttribute('href'))")
            assert hrefs == [f"{p.stem}.html" for p in NOTEBOOKS]
            for href in hrefs:
                page.goto((out / href).as_uri(), wait_until="load")
                broken = page.eval_on_selector_all(
                    "img", "images => images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt)")
                assert broken == [], f"{href}: pictures that did not load: {broken}"
                hidden = page.eval_on_selector_all(
                    ".course-viz-fallback img", "images => images.filter(i => i.offsetHeight === 0).length")
                assert hidden == 0, f"{href}: a view's static picture is not shown"
                typeset = page.evaluate(TYPESET)
                assert typeset["formulas"] == pages[href].formulas, f"{href}: {typeset}"
                assert typeset["flat"] == [] and typeset["tex"] == [], f"{href}: math not typeset: {typeset}"
                assert typeset["overflowing"] == [], f"{href}: code past its box at 1280 px: {typeset}"
                if shots and page.locator("math[display=block]").count():
                    page.locator("math[display=block]").first.scroll_into_view_if_needed()
                    page.screenshot(path=str(Path(shots) / href.replace(".html", ".png")))
        finally:
            browser.close()
    assert errors == []
    assert blocked == [], "a page asked the network for something (MathJax's CDN, a script, a picture)"


# In the page: how many <math> elements, which fractions are not stacked or superscripts not raised (MathML not laid
# out), which markdown still shows TeX, and which code boxes have lines wider than the box.
TYPESET = r"""() => {
  const box = e => e.getBoundingClientRect();
  const flat = [...document.querySelectorAll('mfrac')]
    .filter(f => box(f.children[0]).bottom > box(f.children[1]).top + 1)
    .concat([...document.querySelectorAll('msup')].filter(s => box(s.children[1]).top >= box(s.children[0]).top))
    .map(e => e.textContent);
  const tex = [...document.querySelectorAll('.jp-RenderedMarkdown')].map(m => m.innerText)
    .filter(t => /\$\$|\\(text|frac|mathbf)\b/.test(t)).map(t => t.slice(0, 80));
  const overflowing = [...document.querySelectorAll('.jp-InputArea-editor pre, .jp-OutputArea-output pre')]
    .filter(p => p.scrollWidth > p.clientWidth + 1 || box(p).right > box(p.closest('.jp-Cell')).right + 1)
    .map(p => p.textContent.slice(0, 80));
  return {formulas: document.querySelectorAll('math').length, flat, tex, overflowing};
}"""

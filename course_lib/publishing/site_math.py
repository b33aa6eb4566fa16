"""The site's math, typeset when the site is built: every formula of a markdown cell becomes MathML, which browsers
draw natively, so a page needs no MathJax, no script and no network to show it.

nbconvert's own markdown parser finds the formulas (``$...$``, ``$$...$$``, ``\\(...\\)``, ``\\[...\\]`` and bare
``\\begin{env}...\\end{env}``), exactly as for MathJax, so a ``$`` in code, in an inline code span or in an output is
never taken for math. latex2mathml converts each one; a formula it cannot convert (an error, or a command it left as
TeX) is shown as its TeX source in ``<code class="course-tex">`` and counted, and the build reports the count.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

from jinja2 import pass_context
from latex2mathml.converter import convert
from nbconvert.exporters import HTMLExporter
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

# nbconvert's template loads MathJax from a CDN: the whole block goes, MathML needs nothing loaded.
MATHJAX_BLOCK = re.compile(r"\s*<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S)
TEXT_ARGUMENT = re.compile(r"\\(text|textrm|textit|textbf|mbox)\{([^{}]*)\}")
TEXT_ESCAPE = re.compile(r"\\([_&%$#])")  # latex2mathml keeps the backslash of \_ inside \text{...}
TAG = re.compile(r"<[^>]*>")


def unescape_text(text: str) -> str:
    """The text of ``\\text{...}`` with ``\\_``, ``\\&``, ``\\%``, ``\\$`` and ``\\#`` as their characters."""
    return TEXT_ESCAPE.sub(lambda m: m.group(1), text)


def to_mathml(tex: str, display: bool) -> str | None:
    """``tex`` as a MathML ``<math>`` element, or None when latex2mathml cannot convert it faithfully."""
    source = TEXT_ARGUMENT.sub(lambda m: f"\\{m.group(1)}{{{unescape_text(m.group(2))}}}", tex.strip())
    try:
        mathml = convert(source, display="block" if display else "inline")
    except Exception:  # noqa: BLE001  (latex2mathml raises many kinds of error for TeX it does not know)
        return None
    mathml = mathml.replace("<mo>&#x0221E;</mo>", "<mi>&#x0221E;</mi>")  # a symbol: no operator gap in −∞
    text = html.unescape(TAG.sub("", mathml))
    return None if "\\" in text else mathml  # a command left as text: latex2mathml did not know it


@dataclass
class Tally:
    """How many formulas were typeset, and the TeX of those shown as source."""

    typeset: int = 0
    failed: list[str] = field(default_factory=list)


class MathMLRenderer(IPythonRenderer):
    """nbconvert's markdown renderer, with formulas as MathML instead of TeX left for MathJax."""

    def __init__(self, tally: Tally, **kwargs):
        super().__init__(**kwargs)
        self.tally = tally

    def _math(self, tex: str, display: bool, delimiters: tuple[str, str]) -> str:
        mathml = to_mathml(tex, display)
        if mathml is None:
            self.tally.failed.append(tex)
            source = html.escape(delimiters[0] + tex + delimiters[1])
            return f'<code class="course-tex">{source}</code>'
        self.tally.typeset += 1
        return mathml

    def block_math(self, body: str) -> str:
        return self._math(body, True, ("$$", "$$"))

    def inline_math(self, body: str) -> str:
        return self._math(body, False, ("$", "$"))

    def latex_environment(self, name: str, body: str) -> str:
        return self._math(f"\\begin{{{name}}}{body}\\end{{{name}}}", True, ("", ""))


class MathMLExporter(HTMLExporter):
    """HTMLExporter whose markdown cells carry MathML, with no MathJax on the page; ``tally`` counts the formulas."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.tally = Tally()

    @pass_context
    def markdown2html(self, context, source):
        cell = context.get("cell", {})
        options = {name: getattr(self, name) for name in ("anchor_link_text", "exclude_anchor_links")
                   if hasattr(self, name)}
        renderer = MathMLRenderer(self.tally, escape=False, attachments=cell.get("attachments", {}),
                                  embed_images=self.embed_images,
                                  path=context.get("resources", {}).get("metadata", {}).get("path", ""),
                                  **options, **getattr(self, "lexer_options", {}))
        return MarkdownWithMath(renderer=renderer).render(source)

    def from_notebook_node(self, nb, resources=None, **kwargs):
        body, resources = super().from_notebook_node(nb, resources, **kwargs)
        return MATHJAX_BLOCK.sub("", body, count=1), resources

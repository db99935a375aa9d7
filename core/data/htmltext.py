"""A shop's HTML product description as plain text, read by a real HTML parser (the standard library's)."""
from __future__ import annotations

from html.parser import HTMLParser

# Tags whose start or end ends a run of text (a paragraph, a list item, a table cell...): a line break there.
_BREAKS = frozenset({"p", "br", "div", "li", "ul", "ol", "tr", "td", "th", "table", "h1", "h2", "h3", "h4", "h5",
                     "h6", "section", "article", "blockquote", "pre", "hr", "dd", "dt", "dl"})
# Tags whose content is never text a shopper reads.
_SKIPPED = frozenset({"script", "style", "template", "noscript", "head", "title", "svg", "iframe", "object"})


class _Text(HTMLParser):
    """Collects the text of a document: entities decoded, skipped elements' content dropped, a line break at
    block boundaries."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in _SKIPPED:
            self.skipping += 1
        elif tag in _BREAKS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs) -> None:  # <br/>, <img/>: no content to skip
        if tag in _BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self.skipping = max(self.skipping - 1, 0)
        elif tag in _BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """The readable text of ``html`` (a fragment or a document): tags dropped, entities decoded, the content of
    scripts and styles left out, one line per paragraph or list item, spaces within a line collapsed, empty lines
    dropped (plain text too); an unclosed tag or a stray ``<`` costs nothing but that tag."""
    text = html
    if "<" in html or "&" in html:
        parser = _Text()
        parser.feed(html)
        parser.close()
        text = "".join(parser.parts)
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)

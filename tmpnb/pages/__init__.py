"""The orchestrator's few HTML pages: self-contained, no external assets.

Each page is a body fragment in `<name>.html` laid into `layout.html`. Values are
HTML-escaped here, so a template never sees raw visitor input.
"""

from __future__ import annotations

from functools import cache
from html import escape
from importlib.resources import files
from string import Template


@cache
def _template(name: str) -> Template:
    return Template(files(__package__).joinpath(name).read_text(encoding="utf-8"))


def render_page(name: str, title: str, head: str = "", markup: dict[str, str] | None = None,
                **values: object) -> bytes:
    """The page `name` with `values` escaped into it, as UTF-8 bytes.

    `head` is trusted markup for the page's <head> (e.g. a refresh); never visitor input.
    `markup` fills placeholders with markup the caller has already escaped.
    """
    filled = {k: escape(str(v)) for k, v in values.items()}
    filled.update(markup or {})
    body = _template(f"{name}.html").substitute(filled)
    page = _template("layout.html").substitute(title=escape(title), head=head, body=body)
    return page.encode("utf-8")


def render_document(template: str, **values: object) -> bytes:
    """A whole page of its own (no layout), `values` escaped into it."""
    return _template(f"{template}.html").substitute({k: escape(str(v)) for k, v in values.items()}).encode("utf-8")

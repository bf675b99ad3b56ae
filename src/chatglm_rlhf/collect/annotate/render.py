"""Server-side rendering: a Jinja2 environment with autoescape on for everything, and safe Markdown.

Every text from the database (prompts, responses, rationales, usernames) goes through Jinja's
autoescape, so a response containing ``<script>`` shows as text. Guidelines are Markdown rendered by
markdown-it with raw HTML disabled (``<b>`` stays literal text) and its link validation, which drops
``javascript:`` and similar URLs.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"


@lru_cache(maxsize=1)
def _markdown():
    from markdown_it import MarkdownIt

    # "commonmark" with html=False: raw HTML in the source is escaped, not passed through.
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")


def markdown_to_html(text: str) -> Markup:
    return Markup(_markdown().render(text or ""))


def markdown_sections(text: str) -> list[tuple[str, str]]:
    """``(heading, source)`` per top-level heading of a Markdown text, in order; text before the
    first heading is a section with the heading "". Headings inside code blocks do not split."""
    lines = (text or "").splitlines(keepends=True)
    starts = [t.map[0] for t in _markdown().parse(text or "") if t.type == "heading_open" and t.map]
    bounds = ([0] if not starts or starts[0] > 0 else []) + starts + [len(lines)]
    out = []
    for a, b in zip(bounds, bounds[1:]):
        source = "".join(lines[a:b])
        heading = lines[a].strip().lstrip("#").strip() if a in starts else ""
        if source.strip():
            out.append((heading, source))
    return out


def seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} s"


def number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=True,  # all templates, whatever their extension
        undefined=StrictUndefined,  # a missing variable is a bug, not an empty string
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(markdown=markdown_to_html, seconds=seconds, number=number, percent=percent)
    return env


def render(name: str, **context) -> str:
    return environment().get_template(name).render(**context)

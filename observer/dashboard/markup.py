"""The pages' markup: the Jinja2 templates (``templates/``) and the style sheet."""

from __future__ import annotations

import functools
import re

import jinja2
import markupsafe


@functools.cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("observer.dashboard", "templates"),
        autoescape=True,  # every value, unit names and job output above all, is escaped
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,  # templates do not change while observer runs: no stat per page
    )
    # Our own constant style sheet, the one value not escaped (entities mean nothing in CSS).
    css, _, _ = environment.loader.get_source(environment, "style.css")  # type: ignore[union-attr]
    environment.globals["css"] = markupsafe.Markup(minify_css(css))
    return environment


def minify_css(css: str) -> str:
    """Drop comments and needless spaces: the style sheet is inlined into every page."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.DOTALL)
    css = re.sub(r"\s+", " ", css)
    return re.sub(r"\s*([{}:;,>])\s*", r"\1", css).replace(";}", "}").strip()


def template(name: str) -> jinja2.Template:
    return _environment().get_template(name)

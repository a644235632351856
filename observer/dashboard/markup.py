"""The pages' markup: the Jinja2 templates (``templates/``), the style sheet, and the run
pages, drawn without a template (a generation writes up to 100,000 of them)."""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass

import jinja2
import markupsafe

from observer.dashboard.site import POLICY, STYLESHEET
from observer.dashboard.views import OutputRow, RunRow
from observer.reading import history

_MARKS = ("\x00title\x00", "\x00crumbs\x00", "\x00main\x00", "\x00generated\x00")


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
    environment.globals["policy"] = markupsafe.Markup(POLICY)  # our constant, quotes and all
    environment.globals["stylesheet"] = STYLESHEET
    return environment


def template(name: str) -> jinja2.Template:
    return _environment().get_template(name)


def stylesheet() -> bytes:
    """The style sheet every page links, minified."""
    environment = _environment()
    css, _, _ = environment.loader.get_source(environment, "style.css")  # type: ignore[union-attr]
    return minify_css(css).encode("utf-8")


def minify_css(css: str) -> str:
    """Drop comments and needless spaces."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.DOTALL)
    css = re.sub(r"\s+", " ", css)
    return re.sub(r"\s*([{}:;,>])\s*", r"\1", css).replace(";}", "}").strip()


_SPECIAL = re.compile("[&<>\"']")


def escape(value: object) -> str:
    """``value`` as text in HTML (an element's or an attribute's); most need no change."""
    text = value if isinstance(value, str) else str(value)
    return html.escape(text) if _SPECIAL.search(text) else text


@dataclass(frozen=True, slots=True)
class Shell:
    """The frame all pages share (``base.html.j2``), drawn once a generation: a page drawn
    without a template is its parts put between the frame's pieces."""

    pieces: tuple[str, ...]

    @classmethod
    def of(cls, common: dict[str, str]) -> Shell:
        title, crumbs, main, generated = (markupsafe.Markup(mark) for mark in _MARKS)
        html = template("shell.html.j2").render(
            **{**common, "generated": generated}, title=title, crumbs=crumbs, main=main
        )
        pieces = re.split("|".join(_MARKS), html)
        if len(pieces) != len(_MARKS) + 1:
            raise ValueError("base.html.j2 holds each part of a page once, in this order")
        return cls(tuple(pieces))

    def page(self, title: str, crumbs: str, main: str, generated: str) -> str:
        """A page of these parts (markup, escaped by the caller)."""
        p = self.pieces
        return f"{p[0]}{title}{p[1]}{crumbs}{p[2]}{main}{p[3]}{escape(generated)}{p[4]}"


def run_page(
    shell: Shell,
    generated: str,
    run: history.RecordedRun,
    *,
    kind: str,
    result: str,
    unit_href: str,
    facts: Sequence[tuple[str, str]],
    lines: Sequence[OutputRow],
    newer: str | None,
    older: str | None,
) -> str:
    """A run's page: its facts and its output (every value escaped here)."""
    unit, href, number = escape(run.unit), escape(unit_href), int(run.id)
    crumbs = f'<a class="crumb" href="{href}">{unit}</a><span class="crumb">run {number}</span>'
    parts = [
        f'<h1><span class="badge {escape(kind)}">{escape(result)}</span> {unit}, run {number}'
        '</h1>\n<nav class="pages">\n',
        f'<a href="{escape(newer)}">&larr; newer run</a>' if newer else "",
        f'<a href="{href}">all runs of this unit</a>\n',
        f'<a href="{escape(older)}">older run &rarr;</a>' if older else "",
        '</nav>\n<dl class="run">\n',
        # The facts' names are observer's own words (reading.render.run_facts).
        *[f"<dt>{name}</dt><dd>{escape(value)}</dd>\n" for name, value in facts],
        "</dl>\n<h2>Output</h2>\n",
    ]
    if lines:
        parts.append('<pre class="output">\n')
        parts += [_output_line(line) for line in lines]
        parts.append("</pre>\n")
    else:
        parts.append('<p class="note">(no output recorded)</p>\n')
    title = f"run {number} of {unit}: observer"
    return shell.page(title, crumbs, "".join(parts), generated)


def _output_line(line: OutputRow) -> str:
    if line.dropped:
        return f'<span class="dropped">{escape(line.text)}</span>\n'
    # The time and the priority are drawn from numbers (views.output_rows): only the text is
    # the job's.
    return (
        f'<span class="ts">{line.time}</span> <span class="pr {line.priority_class}">'
        f"{line.priority}</span> {escape(line.text)}\n"
    )


def run_rows(rows: Sequence[RunRow]) -> markupsafe.Markup:
    """The rows of a unit page's table of runs (every value escaped here)."""
    parts = []
    for row in rows:
        href, kind = escape(row.href), escape(row.kind)
        title = f' title="{escape(row.findings_title)}"' if row.findings_title else ""
        parts.append(
            f'<tr class="{kind}">\n<td class="num"><a href="{href}">{int(row.id)}</a></td>\n'
            f'<td><a href="{href}">{escape(row.started)}</a></td>\n'
            f'<td class="num">{escape(row.duration)}</td>\n'
            f'<td class="result {kind}">{escape(row.result)}</td>\n<td>{escape(row.exit)}</td>\n'
            f"<td>{escape(row.trigger)}</td>\n"
            f'<td class="findings"{title}>{escape(row.findings)}</td>\n'
            f'<td class="muted">{"truncated" if row.truncated else ""}</td>\n</tr>\n'
        )
    return markupsafe.Markup("".join(parts))

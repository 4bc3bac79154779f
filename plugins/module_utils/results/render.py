# Copyright: servelab developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The report's content, neutral of format, and its two renderers: markdown and HTML.

report.py builds each section once as a Section; both renderers draw every part of it,
so report.md and report.html always hold the same sections.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from . import stats


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Section:
    """A titled part of the report: its paragraphs, a list, tables and images, in order."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(run_id: str, secs: list[Section]) -> str:
    lines = [f"# servelab report: {run_id}", ""]
    for sec in secs:
        lines += [f"## {sec.title}", ""]
        for paragraph in sec.paragraphs:
            lines += [paragraph, ""]
        if sec.items:
            lines += [f"- {x}" for x in sec.items] + [""]
        for table in sec.tables:
            lines += [
                "| " + " | ".join(map(_md_cell, table.header)) + " |",
                "|" + "---|" * len(table.header),
            ]
            lines += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in table.rows] + [""]
        if sec.images:
            lines += [f"![{p.stem}]({p.name})" for p in sec.images] + [""]
    return "\n".join(lines)


def to_html(run_id: str, secs: list[Section]) -> str:
    """One file that opens from disk: images inline as data URIs, no external resources."""
    e = html.escape
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>servelab report {e(run_id)}</title><style>",
        "body{font-family:sans-serif;margin:2em;max-width:1200px}",
        "table{border-collapse:collapse;margin:1em 0}",
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}",
        "td:first-child,th:first-child{text-align:left}",
        ".better{background:#dfd}.worse{background:#fdd}.same{background:#eef}",
        ".undecided{background:#ffd}img{max-width:100%}",
        "</style></head><body>",
        f"<h1>servelab report: {e(run_id)}</h1>",
    ]
    for sec in secs:
        parts.append(f"<h2>{e(sec.title)}</h2>")
        parts += [f"<p>{e(paragraph)}</p>" for paragraph in sec.paragraphs]
        if sec.items:
            parts.append("<ul>" + "".join(f"<li>{e(x)}</li>" for x in sec.items) + "</ul>")
        for table in sec.tables:
            parts.append(
                "<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in table.header) + "</tr>"
            )
            for row in table.rows:
                words = (stats.BETTER, stats.WORSE, stats.SAME, stats.UNDECIDED)
                css = next((v.lower() for v in words if v in row), "")
                parts.append(
                    f"<tr class='{css}'>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>"
                )
            parts.append("</table>")
        for path in sec.images:
            data = base64.b64encode(path.read_bytes()).decode()
            parts.append(
                f"<figure><img alt='{e(path.stem)}' src='data:image/png;base64,{data}'>"
                f"<figcaption>{e(path.stem)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"

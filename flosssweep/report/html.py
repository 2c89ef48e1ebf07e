"""report.md as one self-contained page, report.html: the figures inline as data URIs, so a browser,
or MLflow's artifact viewer, shows the report with its figures from the one file.

It reads only the markdown the report itself writes (headings, pipe tables, images, paragraphs with
bold and code spans), not markdown in general.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

_MIME = {".png": "image/png", ".svg": "image/svg+xml"}  # PDF cannot be shown inline: it stays a link
_IMAGE = re.compile(r"^!\[([^\]]*)\]\(([^)]+)\)$")
_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60em; margin: 1.5em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.7em; }
th { background: #f2f2f2; }
td.num, th.num { text-align: right; }
img { max-width: 100%; width: 34em; display: block; margin: 1em 0 0.3em; }
"""


def write_html(markdown_path: Path, title: str) -> Path:
    """Write report.html next to `markdown_path`; images are read from beside it."""
    folder = markdown_path.parent
    blocks = re.split(r"\n\s*\n", markdown_path.read_text().strip())
    body = "\n".join(_block(b.strip(), folder) for b in blocks if b.strip())
    page = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head>\n<body>\n<h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )
    path = folder / "report.html"
    path.write_text(page)
    return path


def _block(block: str, folder: Path) -> str:
    lines = block.splitlines()
    if block.startswith("#"):
        level = min(len(block) - len(block.lstrip("#")) + 1, 6)  # under the page's own <h1>
        return f"<h{level}>{_inline(block.lstrip('#').strip())}</h{level}>"
    if all(line.startswith("|") for line in lines) and len(lines) >= 2:
        return _table(lines)
    image = _IMAGE.match(block)
    if image:
        return _image(image.group(1), folder / image.group(2))
    return "<p>" + "<br>\n".join(_inline(line) for line in lines) + "</p>"


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _table(lines: list[str]) -> str:
    header, rule, rows = _cells(lines[0]), _cells(lines[1]), [_cells(line) for line in lines[2:]]
    right = [cell.endswith(":") for cell in rule]

    def row(cells: list[str], tag: str) -> str:
        opened = [f'<{tag} class="num">' if r else f"<{tag}>" for r in right]
        return "<tr>" + "".join(f"{o}{_inline(c)}</{tag}>" for o, c in zip(opened, cells)) + "</tr>"

    return "<table>\n" + row(header, "th") + "\n" + "\n".join(row(r, "td") for r in rows) + "\n</table>"


def _image(alt: str, path: Path) -> str:
    mime = _MIME.get(path.suffix.lower())
    if mime is None or not path.is_file():
        return f'<p><a href="{html.escape(path.name)}">{html.escape(alt)}: {html.escape(path.name)}</a></p>'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:{mime};base64,{data}">'


def _inline(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)

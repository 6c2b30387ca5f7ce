"""Rendering document blocks as Markdown and as one self-contained HTML page.

The HTML embeds every figure as a base64 data URI and its style inline: it
opens offline, with no external asset.
"""

from __future__ import annotations

import base64
import html as html_lib
import os


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(document: list) -> str:
    """The blocks as Markdown; figures link to the PNGs beside report.md."""
    lines = []
    for block in document:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            lines += ["#" * int(kind[1]) + " " + block[1], ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "list":
            lines += [f"- {item}" for item in block[1]] + [""]
        elif kind == "table":
            _, header, rows = block
            lines.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
            lines.append("|" + " --- |" * len(header))
            lines += [
                "| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows
            ]
            lines.append("")
        elif kind == "figure":
            _, path, caption = block
            lines += [f"![{caption}]({path.replace(os.sep, '/')})", "", f"*{caption}*"]
            lines.append("")
    return "\n".join(lines)


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif;
  margin: 0; color: #1b1b1b; background: #fff; line-height: 1.45; }
main { max-width: 74rem; margin: 0 auto; padding: 1rem 1.5rem 3rem; }
h1 { font-size: 1.6rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #bbb; padding: 0.3rem 0.5rem; vertical-align: top;
  text-align: left; overflow-wrap: break-word; }
th { background: #eef1f5; }
tr:nth-child(even) td { background: #fafafa; }
.scroll { overflow-x: auto; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 0.85rem; color: #555; }
.missing { color: #a00; }
td.number { overflow-wrap: normal; }
"""


def _data_uri(path: str) -> str | None:
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        encoded = base64.b64encode(f.read()).decode("ascii")
    return f"data:image/png;base64,{encoded}"


# In a numeric cell, a line may break only before these ("28.430 ± 1.270 dB"
# becomes "28.430" over "± 1.270 dB"), so wide tables fit a window.
_NUMBER_BREAKS = ("±", "(")


def _html_cell(value) -> str:
    text = str(value)
    number = len(text) <= 24 and any(c.isdigit() for c in text)
    if not number:
        return f"<td>{html_lib.escape(text)}</td>"
    words = text.split(" ")
    joined = words[0]
    for word in words[1:]:
        joined += (" " if word.startswith(_NUMBER_BREAKS) else "\u00a0") + word
    return f'<td class="number">{html_lib.escape(joined)}</td>'


def html(document: list, study_dir: str, title: str = "Study report") -> str:
    """The blocks as one self-contained HTML page (figures as data URIs)."""
    escape = html_lib.escape
    parts = []
    for block in document:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            parts.append(f"<{kind}>{escape(block[1])}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{escape(block[1])}</p>")
        elif kind == "list":
            items = "".join(f"<li>{escape(item)}</li>" for item in block[1])
            parts.append(f"<ul>{items}</ul>")
        elif kind == "table":
            _, header, rows = block
            head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
            body = "".join(
                "<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in rows
            )
            parts.append(
                f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
                f"<tbody>{body}</tbody></table></div>"
            )
        elif kind == "figure":
            _, path, caption = block
            uri = _data_uri(os.path.join(study_dir, path))
            if uri is None:
                parts.append(f'<p class="missing">figure missing: {escape(path)}</p>')
                continue
            parts.append(
                f'<figure><img src="{uri}" alt="{escape(caption)}">'
                f"<figcaption>{escape(caption)} ({escape(path)})</figcaption></figure>"
            )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n"
        "<body>\n<main>\n" + "\n".join(parts) + "\n</main>\n</body>\n</html>\n"
    )

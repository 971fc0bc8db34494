"""Read sections and tables back out of a written report (stdlib only, no HTML parser)."""

from __future__ import annotations

import re


def section(text: str, anchor: str) -> str:
    """The HTML of the report section with id ``anchor``."""
    start = text.index(f'<section id="{anchor}">')
    return text[start:text.index("</section>", start)]


def table_after(html: str, marker: str) -> list[dict[str, str]]:
    """The rows (header → cell text) of the first HTML table after ``marker``."""
    table = html[html.index(marker):]
    table = table[table.index("<table"):table.index("</table>")]
    header = [re.sub(r"<[^>]+>", "", h).strip()
              for h in re.findall(r"<th[^>]*>(.*?)</th>", table, flags=re.S)]
    body = table[table.index("<tbody>"):]
    rows = []
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, flags=re.S):
        cells = [re.sub(r"<[^>]+>", "", c).strip()
                 for c in re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)]
        rows.append(dict(zip(header, cells, strict=True)))
    return rows

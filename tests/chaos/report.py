"""Write the chaos suite's figures (JSON lines from a run) as the table in docs/chaos.md.

    python -m tests.chaos.report FIGURES [docs/chaos.md]

``./build.sh chaos`` runs it after the full suite; the table sits between two marker lines,
so the text around it stays as written.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- chaos-table -->", "<!-- /chaos-table -->"


def cell(value: Any) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k} {cell(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    return str(value)


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"Latest run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, this machine (2 cores, shared).",
        "",
        "| scenario | form | figures |",
        "|---|---|---|",
    ]
    for row in rows:
        figures = {k: v for k, v in row.items() if k not in ("scenario", "form")}
        text = "<br>".join(f"{k.replace('_', ' ')}: {cell(v)}" for k, v in figures.items())
        lines.append(f"| {row['scenario']} | {row['form']} | {text} |")
    return "\n".join(lines)


def main(figures_path: str, doc_path: str = "docs/chaos.md") -> None:
    rows = [json.loads(line) for line in Path(figures_path).read_text().splitlines() if line.strip()]
    doc = Path(doc_path)
    text = doc.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{BEGIN}\n{table(rows)}\n{END}{tail}")
    print(f"{doc}: {len(rows)} scenarios")


if __name__ == "__main__":
    main(*sys.argv[1:])

"""Turn the reliability suite's JSON counts into the Markdown table of docs/reliability.md.

Usage::

    PREFECT_DS_FULL=1 PREFECT_DS_RELIABILITY_REPORT=reliability.json \\
        .venv/bin/python -m pytest tests/reliability
    .venv/bin/python tests/reliability/report.py reliability.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROWS = ["csv", "parquet", "hdf", "feather", "sql-sqlite", "sql-postgresql"]
LABELS = {"csv": "csv (+ schema sidecar)", "parquet": "parquet", "hdf": "hdf (h5py)",
          "feather": "feather (plugin)", "sql-sqlite": "sql on SQLite",
          "sql-postgresql": "sql on PostgreSQL"}
COLUMNS = [
    ("kills", "torn", "SIGKILLs tried / torn targets"),
    ("corrupt_cases", "wrong_frames", "corrupt cases / wrong frames"),
    ("hostile_inputs", "accepted", "hostile inputs / accepted"),
    ("random_frames", "mismatches", "random frames / mismatches"),
    ("unsupported_inputs", "unsupported_written", "unsupported frames / mangled writes"),
    ("faults", "faults_damaged", "resource faults / damaged targets"),
]


def table(report: dict[str, object]) -> str:
    """The Markdown table: one row per format, ``tried / went wrong`` per column."""
    targets = report["targets"]
    assert isinstance(targets, dict)
    lines = ["| format | " + " | ".join(title for _, _, title in COLUMNS) + " |",
             "|---|" + "---:|" * len(COLUMNS)]
    totals = {metric: 0 for pair in COLUMNS for metric in pair[:2]}
    for key in ROWS:
        row = targets.get(key, {})
        cells = []
        for tried, wrong, _ in COLUMNS:
            n, bad = int(row.get(tried, 0)), int(row.get(wrong, 0))
            totals[tried] += n
            totals[wrong] += bad
            cells.append(f"{n:,} / {bad}" if n else "-")
        lines.append(f"| {LABELS[key]} | " + " | ".join(cells) + " |")
    lines.append("| **all** | " + " | ".join(
        f"**{totals[t]:,} / {totals[w]}**" for t, w, _ in COLUMNS) + " |")
    kills = {k: targets.get(k, {}) for k in ROWS}
    detail = ["", "After each kill (previous complete version / the new complete version / "
              "absent, from a first write), and kills that landed mid-write:", ""]
    for key, row in kills.items():
        if row.get("kills"):
            detail.append(
                f"- {LABELS[key]}: {row.get('after_kill_previous', 0)} / "
                f"{row.get('after_kill_new', 0)} / {row.get('after_kill_absent', 0)}; "
                f"{row.get('kills_mid_write', 0)} mid-write; "
                f"{row.get('stale_temps_removed', 0)} stale temporaries swept")
    return "\n".join(lines + detail) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    report = json.loads(Path(argv[1]).read_text())
    print(("Full run" if report.get("full") else "Fast run") + " figures:\n")
    print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

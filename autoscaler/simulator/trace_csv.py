"""Reads a request trace CSV: timestamp, input tokens, output tokens per row.

The Azure LLM inference traces (AzurePublicDataset) have exactly these columns, named
TIMESTAMP, ContextTokens, GeneratedTokens; any header whose columns are in this order
works, and so does a file without a header. Timestamps are seconds or ISO datetimes.
"""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        # Azure's traces write "2023-11-16 18:15:46.6805900": trim to microseconds.
        head, dot, frac = text.strip().partition(".")
        stamp = f"{head}.{frac[:6]}" if dot else head
        return datetime.fromisoformat(stamp).timestamp()


def read_trace(path: Path) -> tuple[list[float], list[int], list[int]]:
    """Rows sorted by time, shifted so the first arrives at 0. Errors name the line."""
    if not path.is_file():
        raise ValueError(f"--trace {path}: no such file")
    rows: list[tuple[float, int, int]] = []
    with path.open(newline="") as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 3:
                raise ValueError(f"{path}:{line_no}: want timestamp,input,output; got {row}")
            try:
                stamp = _seconds(row[0])
                prompt, output = int(float(row[1])), int(float(row[2]))
            except ValueError:
                if line_no == 1:
                    continue  # a header
                raise ValueError(
                    f"{path}:{line_no}: not a timestamp and two token counts: {row}"
                ) from None
            if prompt < 0 or output < 0:
                raise ValueError(f"{path}:{line_no}: token counts must be >= 0")
            rows.append((stamp, max(prompt, 1), max(output, 1)))
    if not rows:
        raise ValueError(f"{path}: no requests")
    rows.sort()
    start = rows[0][0]
    return [r[0] - start for r in rows], [r[1] for r in rows], [r[2] for r in rows]

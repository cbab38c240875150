"""What a running cluster's files hold, read while its nodes keep writing."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def files_holding(root: Path, needles: Iterable[bytes], skip: Iterable[str] = ()) -> tuple[int, list[Path]]:
    """(files read, those holding any of `needles`) under `root`, outside folders named in `skip`.

    A node writes a file under a temporary name and renames it: one listed a moment before can be gone
    when it is read. Then the whole tree is listed again (its new name may have come after the listing),
    until a pass reads every file it listed."""
    wanted, skipped = list(needles), set(skip)
    for _ in range(20):
        paths = [p for p in root.rglob("*") if not skipped & set(p.parts)]
        found, vanished = [], False
        for path in paths:
            try:
                if not path.is_file():
                    continue
                data = path.read_bytes()
            except FileNotFoundError:
                vanished = True
                continue
            if any(n in data for n in wanted):
                found.append(path)
        if not vanished:
            return sum(1 for p in paths if p.is_file()), found
    raise AssertionError(f"files under {root} kept vanishing while they were read (20 passes)")

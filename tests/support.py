"""Helpers shared by tests (importable as `support`: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "examples" / "reference-month"


def drop_reference_usage(inbox: Path) -> list[Path]:
    """Put the reference month's usage files into an inbox, as a person would."""
    return [Path(shutil.copy(path, inbox / path.name)) for path in sorted((REFERENCE / "usage").iterdir())]

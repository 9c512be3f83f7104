"""Where the read-only shared material lives, and how to skip when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[3] / "shared"


def shared_file(relative: str) -> Path:
    """The path of a file in ../shared, or skip the calling test saying why."""
    path = SHARED / relative
    if not path.is_file():
        pytest.skip(f"contract file {path} is absent (it lives beside the repo, in ../shared)")
    return path

"""Fixtures of the fuzz suite: the shared folder of (broken) data files, and the case counts
printed at the end of the run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from .hostile import write_data_files

COUNTS: Counter[str] = Counter()


@pytest.fixture(scope="session")
def fuzz_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``data/`` (every kind of data file, good and broken); cases get their own
    folders next to it, so a spec's ``../data/NAME`` reaches them."""
    root = tmp_path_factory.mktemp("fuzz")
    write_data_files(root / "data")
    return root


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if COUNTS:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(COUNTS.items()))
        terminalreporter.write_line(f"fuzz cases run: {parts}")

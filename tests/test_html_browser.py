"""The HTML leaderboard in a real browser (headless Chromium): it renders, and names stay text."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bench.report.leaderboard import ResultRow, render

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium installed (README: apt-get install chromium)"
)
HOSTILE = "<img src=x onerror=\"document.title='pwned'\">"


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]  # fmt: skip
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


def _rows() -> list[ResultRow]:
    return [
        ResultRow("minilm-nli", "epistemic_reasoning", "accuracy", 0.805, 0.773, 0.836, 604, 0.632),
        ResultRow("minilm-nli", "vitaminc_2way", "accuracy", 0.482, 0.461, 0.504, 2000, 0.517),
        ResultRow(HOSTILE, "epistemic_reasoning", "accuracy", 0.55, 0.45, 0.65, 604, 0.632),
    ]


def test_leaderboard_html_renders_in_chromium(tmp_path: Path) -> None:
    page = tmp_path / "leaderboard.html"
    page.write_text(render(_rows(), "html"), encoding="utf-8")

    dom = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert "<table" in html
    assert "0.805 [0.773, 0.836]" in html
    assert "0.550 [0.450, 0.650]†" in html  # the CI includes the majority rate
    # The hostile model name is shown as text: no element was created, no handler ran.
    assert "pwned" not in html.split("<body")[0]
    assert "<img" not in html
    assert "&lt;img" in html

    shot = tmp_path / "shot.png"
    result = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,600", page.as_uri())
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))
    assert pixels.shape[0] >= 500 and pixels.shape[1] >= 1000
    assert float(np.std(pixels)) > 0.01  # not a blank page

"""`bench --help` start-up against the smallest Typer app, timed side by side.

What a user waits for on `bench --help` is the interpreter, Typer (and the rich help formatter it
uses), and whatever `bench.cli` imports at module level. The first two are the floor any Typer CLI
pays, so the budget is a ratio to a one-command Typer app started the same way (a script run by the
same interpreter), never an absolute time: runs alternate, and each side keeps its best of N, so
load from other processes hits both sides alike.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROUNDS = 7
MAX_RATIO = 1.5

MINIMAL_APP = '''
import typer

app = typer.Typer(add_completion=False)


@app.command()
def hello(name: str = "world") -> None:
    """Say hello."""
    typer.echo(name)


app()
'''

BENCH_APP = """
from bench.cli import main

main()
"""


def _time_help(script: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, env=env
    )
    elapsed = time.perf_counter() - started
    assert proc.returncode == 0 and "Usage" in proc.stdout, proc.stderr[-2000:]
    return elapsed


def test_bench_help_starts_within_ratio_of_minimal_typer_app(tmp_path: Path) -> None:
    minimal = tmp_path / "minimal_app.py"
    minimal.write_text(MINIMAL_APP)
    bench = tmp_path / "bench_app.py"
    bench.write_text(BENCH_APP)
    repo = str(Path(__file__).resolve().parents[2])
    # Same interpreter and environment for both; the repository first so `bench` is this tree.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}
    # One untimed run each warms the OS file cache and writes the .pyc files.
    _time_help(minimal, env)
    _time_help(bench, env)
    best = {"minimal": float("inf"), "bench": float("inf")}
    for _ in range(ROUNDS):
        best["minimal"] = min(best["minimal"], _time_help(minimal, env))
        best["bench"] = min(best["bench"], _time_help(bench, env))
    ratio = best["bench"] / best["minimal"]
    print(
        f"bench --help {best['bench'] * 1000:.0f} ms, minimal Typer app "
        f"{best['minimal'] * 1000:.0f} ms, ratio {ratio:.2f} (best of {ROUNDS})"
    )
    assert ratio <= MAX_RATIO, best

"""The fuzz runner: run the real CLI in-process on one case, with a time limit, and check the
bad-input contract.

The contract (see ``bench.errors``): bad input gets exit code 2 and exactly one line on stderr,
starting ``error:``, under 300 characters, naming the file or option it is about; never a
traceback, never a hang, and nothing written to the results store.

Sections plug in with a table of :class:`Case` (hand-made hostile inputs) or a Hypothesis
strategy that builds cases, and call :func:`check_case`. A case writes its files into a fresh
folder, names them in its command line as ``{dir}/name``, and says whether it must be refused
(``expect="error"``) or may also succeed (``expect="any"``: generated valid-but-odd input).
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Literal

from hypothesis import HealthCheck, settings

MAX_LINE = 300
CASE_SECONDS = 10.0


@dataclass(frozen=True)
class CliResult:
    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str
    seconds: float

    def describe(self) -> str:
        return (
            f"argv={list(self.argv)!r}\nexit={self.exit_code} in {self.seconds:.2f}s\n"
            f"stderr={self.stderr[-3000:]!r}\nstdout={self.stdout[-500:]!r}"
        )


class CaseTimeout(Exception):
    """A case ran past its time limit: a hang, as far as the contract is concerned."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise CaseTimeout in the main thread after ``seconds`` (SIGALRM). An alarm already set (by
    pytest-timeout, say) is put back afterwards with its remaining time."""

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise CaseTimeout(f"no answer within {seconds} s")

    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, on_alarm)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if old_delay:
            remaining = max(old_delay - (time.monotonic() - started), 0.001)
            signal.setitimer(signal.ITIMER_REAL, remaining, old_interval)


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def fuzz_settings(max_examples: int, deadline: timedelta | None = None) -> settings:
    """The Hypothesis settings of every generated fuzz test: the same cases on every run
    (derandomized, no example database), no per-example deadline unless asked (each case bounds
    its own time), and no health checks (the strategies build files and command lines, slowly
    by design).

    ``BENCH_FUZZ_EXPLORE=N`` draws fresh cases instead, N times as many: a hunt for new failures
    (the fixed cases are what CI keeps passing; a fixed seed sees one sample of the space)."""
    explore = int(os.environ.get("BENCH_FUZZ_EXPLORE", "0") or 0)
    return settings(
        derandomize=explore <= 0,
        max_examples=max_examples * max(explore, 1),
        deadline=deadline,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


def run_cli(
    argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = CASE_SECONDS
) -> CliResult:
    """``bench.cli.main(argv)`` in this process, stdout and stderr captured, exit code read from
    SystemExit (a return is exit code 0). Any other exception escapes: a traceback is a failure
    of the contract, and pytest shows it."""
    from bench.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    started = time.perf_counter()
    with (
        environment(env or {}),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        time_limit(timeout),
    ):
        try:
            main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return CliResult(
        tuple(argv), code, out.getvalue(), err.getvalue(), time.perf_counter() - started
    )


def assert_one_line_error(result: CliResult, mentions: Sequence[str] = ()) -> str:
    """Exit code 2 and stderr exactly one line ``error: ...`` (under 300 characters, no
    traceback) that contains at least one of ``mentions`` (a file name, an option) when given.
    Returns the line."""
    assert result.exit_code == 2, result.describe()
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.describe()
    line = lines[0]
    assert line.startswith("error: "), result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    assert len(line) < MAX_LINE, f"{len(line)} characters\n{result.describe()}"
    if mentions:
        assert any(m in line for m in mentions), f"names none of {list(mentions)}: {line!r}"
    return line


def assert_error_or_success(result: CliResult, mentions: Sequence[str] = ()) -> None:
    """For generated input that may be valid: success, or the bad-input contract."""
    if result.exit_code == 0:
        assert "Traceback" not in result.stderr, result.describe()
        return
    assert_one_line_error(result, mentions)


def store_runs(db: Path) -> int | None:
    """Rows in the store's ``runs`` table, or None when the file was never created."""
    from bench.paths import exists

    if not exists(db):  # a name too long to be created was not created
        return None
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        try:
            return int(conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])
        except sqlite3.OperationalError:  # created but no schema yet
            return 0


def assert_store_untouched(db: Path) -> None:
    runs = store_runs(db)
    assert runs in (None, 0), f"{runs} run(s) written to {db}"


Expect = Literal["error", "any", "ok"]


@dataclass(frozen=True)
class Case:
    """One command line over files written into a fresh folder.

    ``argv`` and ``mentions`` may hold ``{dir}``, replaced by that folder. ``files`` maps a name
    to its bytes (text is UTF-8 encoded) or to a function that writes the file itself (for
    folders, FIFOs, huge files). ``expect``: ``error`` must be refused, ``ok`` must succeed,
    ``any`` may do either. ``max_seconds`` bounds the case (alias bombs: 1 s); ``forbidden`` are
    strings that must appear nowhere in the output (the first line of a file that is not a
    table, say); ``env``, environment variables set for the case (``{dir}`` replaced too).
    """

    id: str
    argv: tuple[str, ...]
    files: Mapping[str, bytes | str | Callable[[Path], None]] = field(default_factory=dict)
    expect: Expect = "error"
    mentions: tuple[str, ...] = ()
    max_seconds: float = CASE_SECONDS
    forbidden: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)


def write_files(folder: Path, files: Mapping[str, bytes | str | Callable[[Path], None]]) -> None:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(path)
        elif isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)


def fuzz_env(folder: Path) -> dict[str, str]:
    """Everything a command could write goes under ``folder``; nothing is downloaded."""
    return {
        "BENCH_DB": str(folder / "store.sqlite"),
        "BENCH_MODELS_DIR": str(folder / "models"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }


def check_case(case: Case, folder: Path) -> CliResult:
    """Write the case's files into ``folder``, run it and assert the contract; the store (the
    case's ``--db`` if it gives one, else ``$BENCH_DB``) must hold no runs afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    write_files(folder, case.files)
    argv = [a.replace("{dir}", str(folder)) for a in case.argv]
    mentions = [m.replace("{dir}", str(folder)) for m in case.mentions]
    env = {**fuzz_env(folder), **{k: v.replace("{dir}", str(folder)) for k, v in case.env.items()}}
    result = run_cli(argv, env, timeout=case.max_seconds)
    assert result.seconds < case.max_seconds, f"{result.seconds:.2f} s\n{result.describe()}"
    if case.expect == "error":
        assert_one_line_error(result, mentions)
    elif case.expect == "ok":
        assert result.exit_code == 0, result.describe()
    else:
        assert_error_or_success(result, mentions)
    for text in case.forbidden:
        assert text not in result.stderr + result.stdout, f"{text!r} shown\n{result.describe()}"
    db = Path(argv[argv.index("--db") + 1]) if "--db" in argv[:-1] else folder / "store.sqlite"
    assert_store_untouched(db)
    return result

"""Progress in logs: when stderr is not a terminal, plain lines every 5 % instead of a live bar."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import pytest
from rich.console import Console

from bench import progress as bench_progress
from bench.progress import PlainProgress, make_progress

LINE = re.compile(r"^scoring vader: (\d+)% \((\d+)/1000\) \d+\.\d s$")


def _log() -> tuple[Console, io.StringIO]:
    stream = io.StringIO()  # not a terminal, like a CI log or `| tee`
    return Console(file=stream, width=80), stream


def test_non_terminal_gets_one_plain_line_per_five_percent() -> None:
    target, stream = _log()
    with make_progress(target=target) as bar:
        assert isinstance(bar, PlainProgress)
        tid = bar.add_task("[bold]scoring[/] vader", total=1000)
        for _ in range(100):
            bar.advance(tid, 10)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 20, lines
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines  # markup stripped, no bar drawing or escape codes
    assert [int(m[1]) for m in parsed if m] == list(range(5, 101, 5))
    assert lines[-1].startswith("scoring vader: 100% (1000/1000)")


def test_big_jumps_print_one_line_and_resumed_tasks_start_where_they_are() -> None:
    target, stream = _log()
    with make_progress(target=target) as bar:
        tid = bar.add_task("scoring vader", total=1000, completed=500)  # resumed at 50 %
        bar.advance(tid, 40)  # 54 %: still in the step it started in
        assert stream.getvalue() == ""
        bar.update(tid, advance=400)  # 94 %: one line, not one per step crossed
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scoring vader: 94% (940/1000)")


def test_slow_work_still_logs_at_least_every_minute() -> None:
    now = [0.0]
    target, stream = _log()
    bar = PlainProgress(console=target, get_time=lambda: now[0])
    tid = bar.add_task("scoring vader", total=1000)
    bar.advance(tid, 1)
    now[0] = 59.0
    bar.advance(tid, 1)
    assert stream.getvalue() == ""
    now[0] = 61.0
    bar.advance(tid, 1)  # 0.3 %, but a minute without a line
    assert stream.getvalue().splitlines() == ["scoring vader: 0% (3/1000) 61.0 s"]
    now[0] = 200.0
    bar.update(tid, description="scoring vader")  # nothing advanced: nothing to say
    assert len(stream.getvalue().splitlines()) == 1


def test_every_make_progress_user_logs_to_a_captured_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The shared console writes to whatever sys.stderr is at the time: here a pipe-like capture.
    with make_progress() as bar:
        tid = bar.add_task("[bold]scoring[/] vader", total=1000)
        bar.advance(tid, 1000)
    err = capsys.readouterr().err
    assert err.startswith("scoring vader: 100% (1000/1000)"), err
    with make_progress(enabled=False) as bar:
        tid = bar.add_task("quiet", total=10)
        bar.advance(tid, 10)
    assert capsys.readouterr().err == ""


def test_a_terminal_keeps_the_live_bar() -> None:
    stream = io.StringIO()
    bar = make_progress(target=Console(file=stream, force_terminal=True))
    assert not isinstance(bar, PlainProgress)


@pytest.fixture
def plain_stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    monkeypatch.setattr(bench_progress, "console", Console(file=stream, width=200))
    yield stream


def test_finetune_lines_carry_rate_and_loss(plain_stderr: io.StringIO) -> None:
    from bench.finetune import _progress

    with _progress(True) as bar:
        tid = bar.add_task("fine-tuning", total=200, rate=0.0, loss=float("nan"), dev="")
        bar.update(tid, description="epoch 1/2")
        bar.update(tid, advance=100, loss=0.5, rate=12.34)
        bar.update(tid, dev="  dev 0.812")
        bar.update(tid, advance=100, loss=0.25, rate=13.0)
    lines = plain_stderr.getvalue().splitlines()
    assert re.match(r"^epoch 1/2: 50% \(100/200\) \d+\.\d s 12\.3 ex/s loss 0\.5000$", lines[0])
    assert lines[1].endswith("13.0 ex/s loss 0.2500 dev 0.812"), lines


def test_asset_extraction_logs_sizes() -> None:
    from bench.assets import _progress

    target, stream = _log()
    with _progress(target, "minilm: extracting", 2_000_000) as advance:
        advance(1_000_000)
        advance(1_000_000)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("minilm: extracting: 50% (1.0 MB/2.0 MB)"), lines
    assert lines[1].startswith("minilm: extracting: 100% (2.0 MB/2.0 MB)"), lines

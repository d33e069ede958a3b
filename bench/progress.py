"""Progress bars, one look everywhere; disabled bars cost nothing.

On a terminal (or in Jupyter) they are rich's live bars. When stderr is not a terminal (CI logs,
``| tee``, a file) a live bar would print nothing until it finishes, so the same calls print one
plain line per ``STEP_PERCENT`` instead (and at least one every ``MAX_SILENCE_S`` while work
advances): ``epoch 1/2: 40% (400/1000) 12.3 s``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.errors import MarkupError
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

# Progress and status go to stderr so stdout stays clean for tables and machine output.
console = Console(stderr=True)

STEP_PERCENT = 5
MAX_SILENCE_S = 60.0


def _default_columns() -> list[str | ProgressColumn]:
    return [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]


def is_interactive(target: Console) -> bool:
    """Whether ``target`` can redraw a live bar in place (a terminal, or a Jupyter notebook)."""
    return bool(target.is_terminal or target.is_jupyter)


def _plain(description: str) -> str:
    # Descriptions are rich markup (the bar renders them so); a log line wants the bare text.
    try:
        return Text.from_markup(description).plain
    except MarkupError:
        return description


def _count(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


class PlainProgress(Progress):
    """rich's ``Progress`` bookkeeping (``add_task``, ``update``, ``advance``) with no live bar:
    plain log lines on the console instead, for streams that are not terminals."""

    def __init__(
        self,
        *columns: str | ProgressColumn,
        plain_fields: str = "",
        format_count: Callable[[float], str] = _count,
        step_percent: float = STEP_PERCENT,
        max_silence_s: float = MAX_SILENCE_S,
        **kwargs: Any,
    ) -> None:
        kwargs["disable"] = True  # no live display; the task bookkeeping still runs
        super().__init__(*columns, **kwargs)
        self.plain_fields = plain_fields
        self.format_count = format_count
        self.step_percent = step_percent
        self.max_silence_s = max_silence_s
        # task -> (last step printed, time of the last line, completed at the last line)
        self._marks: dict[TaskID, tuple[int, float, float]] = {}

    def _step(self, task: Task) -> int:
        if not task.total:
            return 0
        return math.floor(min(task.completed / task.total, 1.0) * 100 / self.step_percent)

    def add_task(
        self,
        description: str,
        start: bool = True,
        total: float | None = 100.0,
        completed: int = 0,
        visible: bool = True,
        **fields: Any,
    ) -> TaskID:
        task_id = super().add_task(description, start, total, completed, visible, **fields)
        task = self._tasks[task_id]
        # A resumed task starts part-way: its first line comes at the next step, not at once.
        self._marks[task_id] = (self._step(task), self.get_time(), task.completed)
        return task_id

    def update(self, task_id: TaskID, **kwargs: Any) -> None:
        super().update(task_id, **kwargs)
        self._maybe_log(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._maybe_log(task_id)

    def line(self, task: Task) -> str:
        """``description: 40% (400/1000) 12.3 s`` plus the caller's extra fields."""
        text = f"{_plain(task.description)}:"
        if task.total:
            share = min(task.completed / task.total, 1.0) * 100
            done, total = self.format_count(task.completed), self.format_count(task.total)
            text += f" {share:.0f}% ({done}/{total})"
        else:
            text += f" {self.format_count(task.completed)}"
        text += f" {task.elapsed or 0.0:.1f} s"
        if self.plain_fields:
            text += " " + " ".join(self.plain_fields.format(task=task).split())
        return text

    def _maybe_log(self, task_id: TaskID) -> None:
        task = self._tasks.get(task_id)
        if task is None or task_id not in self._marks:
            return
        step, last_time, last_completed = self._marks[task_id]
        now = self.get_time()
        new_step = self._step(task)
        stale = now - last_time >= self.max_silence_s and task.completed != last_completed
        if new_step > step or stale:
            self.console.print(self.line(task), markup=False, highlight=False, soft_wrap=True)
            self._marks[task_id] = (max(step, new_step), now, task.completed)


def make_progress(
    enabled: bool = True,
    *,
    columns: Sequence[str | ProgressColumn] | None = None,
    plain_fields: str = "",
    format_count: Callable[[float], str] = _count,
    target: Console | None = None,
    transient: bool = False,
) -> Progress:
    """A progress display for ``with make_progress(...) as bar: bar.add_task(...)``.

    ``columns`` replace the default bar's columns; ``plain_fields`` is a format string (with
    ``task``) appended to plain log lines, e.g. the loss the bar shows in a column;
    ``format_count`` writes the counts of plain lines (e.g. bytes). A live bar on a terminal,
    plain lines every ``STEP_PERCENT`` elsewhere, nothing when not ``enabled``.
    """
    out = target if target is not None else console
    cols = list(columns) if columns is not None else _default_columns()
    if not enabled:
        return Progress(*cols, console=out, disable=True)
    if is_interactive(out):
        return Progress(*cols, console=out, transient=transient)
    return PlainProgress(*cols, console=out, plain_fields=plain_fields, format_count=format_count)

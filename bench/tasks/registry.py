"""Where task specs come from: YAML folders, Python registrations and installed plug-ins.

Three sources, merged by name (a duplicate name is an error, never a silent override):
- YAML files in the built-in ``tasks/`` folder, in folders listed in ``BENCH_TASKS_PATH`` (separated
  by ``os.pathsep``) and in folders passed explicitly;
- Python objects registered with ``@register_task``;
- the ``bench.tasks`` entry-point group: each entry point names a ``TaskSpec``, an iterable of them, a
  zero-argument callable returning either, or a folder of YAML files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from bench.errors import SpecError
from bench.specs import TaskSpec, parse_spec, read_yaml

ENTRY_POINT_GROUP = "bench.tasks"
TASKS_PATH_ENV = "BENCH_TASKS_PATH"


@dataclass(frozen=True)
class RegisteredTask:
    spec: TaskSpec
    # Folder that relative data paths in the spec are resolved against (None for Python tasks).
    base_dir: Path | None
    origin: str


_PYTHON_TASKS: dict[str, RegisteredTask] = {}

T = TypeVar("T")


def register_task(obj: T) -> T:
    """Register a ``TaskSpec`` or a zero-argument function returning one (usable as a decorator)."""
    spec = obj() if callable(obj) and not isinstance(obj, TaskSpec) else obj
    if not isinstance(spec, TaskSpec):
        raise SpecError(f"register_task expects a TaskSpec, got {type(spec).__name__}")
    if spec.name in _PYTHON_TASKS:
        raise SpecError(f"task {spec.name!r} is registered twice")
    origin = getattr(obj, "__qualname__", None) or "python"
    _PYTHON_TASKS[spec.name] = RegisteredTask(spec, None, f"python:{origin}")
    return obj


def builtin_tasks_dir() -> Path:
    """The built-in task folder: packaged inside the wheel, or the repository's ``tasks/``."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "_builtin_tasks"
    return packaged if packaged.is_dir() else here.parent / "tasks"


def parse_task(data: Any, origin: str) -> TaskSpec:
    """Validate plain data (already parsed YAML/JSON) as a task spec, with a one-line error."""
    return parse_spec(TaskSpec, data, origin, "a task")


def load_task_file(path: Path) -> TaskSpec:
    """Read one YAML task file. YAML is data: ``safe_load`` only, no tags that build objects."""
    return parse_task(read_yaml(path, "task"), str(path))


def task_dirs(extra: Sequence[Path | str] = ()) -> list[Path]:
    dirs = [builtin_tasks_dir()]
    env = os.environ.get(TASKS_PATH_ENV, "")
    dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs += [Path(p) for p in extra]
    return dirs


def _yaml_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise SpecError(f"task folder {folder} does not exist")
    # Suites and other non-task YAML live in subfolders; only top-level files are tasks.
    return sorted(p for p in folder.iterdir() if p.suffix in {".yaml", ".yml"} and p.is_file())


def _from_entry_point(value: Any, origin: str) -> list[RegisteredTask]:
    if callable(value) and not isinstance(value, TaskSpec):
        value = value()
    if isinstance(value, str | Path):
        folder = Path(value)
        return [RegisteredTask(load_task_file(p), p.parent, str(p)) for p in _yaml_files(folder)]
    items: Iterable[Any] = [value] if isinstance(value, TaskSpec) else value
    out = []
    for item in items:
        if not isinstance(item, TaskSpec):
            raise SpecError(f"entry point {origin} gave {type(item).__name__}, not a TaskSpec")
        out.append(RegisteredTask(item, None, origin))
    return out


def _entry_point_tasks() -> list[RegisteredTask]:
    found: list[RegisteredTask] = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            value = ep.load()
        except Exception as exc:  # a broken plug-in must not take the whole CLI down
            raise SpecError(
                f"task plug-in {ep.name!r} ({ep.value}) failed to load: {exc}"
            ) from None
        found += _from_entry_point(value, f"entry-point:{ep.name}")
    return found


def discover_tasks(extra_dirs: Sequence[Path | str] = ()) -> dict[str, RegisteredTask]:
    """All known tasks by name. Duplicate names across sources are an error."""
    found: list[RegisteredTask] = []
    for folder in task_dirs(extra_dirs):
        found += [RegisteredTask(load_task_file(p), p.parent, str(p)) for p in _yaml_files(folder)]
    found += list(_PYTHON_TASKS.values())
    found += _entry_point_tasks()
    tasks: dict[str, RegisteredTask] = {}
    for item in found:
        if item.spec.name in tasks:
            other = tasks[item.spec.name].origin
            raise SpecError(f"task {item.spec.name!r} is defined twice: {other} and {item.origin}")
        tasks[item.spec.name] = item
    return tasks


def get_task(name: str, extra_dirs: Sequence[Path | str] = ()) -> RegisteredTask:
    """A task by name, or a path to a YAML task file.

    A name that looks like a path (it holds a path separator or ends in .yaml/.yml) is a file:
    one that does not exist, or a folder, is reported as such, not as an unknown task name. An
    unknown name lists the closest known names.
    """
    from bench.errors import shown

    as_path = Path(name)
    has_separator = os.sep in name or (os.altsep is not None and os.altsep in name)
    looks_like_path = as_path.suffix.lower() in {".yaml", ".yml"} or has_separator
    if as_path.is_dir() and (looks_like_path or name in (".", "..")):
        raise SpecError(f"task file {name} is a directory; give a task YAML file or a task name")
    if looks_like_path:
        if as_path.exists():
            # read_yaml reports anything that is not a readable regular file in one line.
            return RegisteredTask(load_task_file(as_path), as_path.parent, str(as_path))
        if has_separator:
            raise SpecError(f"task file {name} not found")
    tasks = discover_tasks(extra_dirs)
    if looks_like_path and name not in tasks:
        # "x.yaml" could still be a task's name (names may hold dots); it is not, so it was
        # meant as a file.
        raise SpecError(f"task file {name} not found")
    if name not in tasks:
        import difflib

        # (A name far longer than any task's is no near miss; difflib is quadratic in length.)
        close = (
            difflib.get_close_matches(name, sorted(tasks), n=3, cutoff=0.6)
            if len(name) <= 200
            else []
        )
        if close:
            hint = f"did you mean {' or '.join(repr(c) for c in close)}?"
        else:
            hint = "see `bench tasks list` for the known tasks"
        if as_path.is_dir():
            hint = f"{name} is a directory, not a task file; {hint}"
        raise SpecError(f"unknown task {shown(name, 60)}; {hint}")
    return tasks[name]


def _reset_python_tasks_for_tests() -> Callable[[], None]:
    """Snapshot the Python registry and return a function that restores it."""
    saved = dict(_PYTHON_TASKS)

    def restore() -> None:
        _PYTHON_TASKS.clear()
        _PYTHON_TASKS.update(saved)

    return restore

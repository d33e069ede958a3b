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
    """A task by name, or a path to a YAML task file."""
    as_path = Path(name)
    if as_path.suffix in {".yaml", ".yml"} and as_path.is_file():
        return RegisteredTask(load_task_file(as_path), as_path.parent, str(as_path))
    tasks = discover_tasks(extra_dirs)
    if name not in tasks:
        known = ", ".join(sorted(tasks)) or "none"
        raise SpecError(f"unknown task {name!r} (known: {known})")
    return tasks[name]


def _reset_python_tasks_for_tests() -> Callable[[], None]:
    """Snapshot the Python registry and return a function that restores it."""
    saved = dict(_PYTHON_TASKS)

    def restore() -> None:
        _PYTHON_TASKS.clear()
        _PYTHON_TASKS.update(saved)

    return restore

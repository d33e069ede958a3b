"""Where task specs come from: YAML folders, Python registrations and installed plug-ins.

Three sources, merged by name (a duplicate name is an error, never a silent override):
- YAML files in the built-in ``tasks/`` folder, in folders listed in ``BENCH_TASKS_PATH`` (separated
  by ``os.pathsep``) and in folders passed explicitly;
- Python objects registered with ``@register_task``, in any module imported so far, including the
  modules named in ``BENCH_PLUGINS`` (comma-separated module names, imported on discovery);
- the ``bench.tasks`` entry-point group: each entry point names a module (imported: its
  ``@register_task`` decorators register its tasks), a ``TaskSpec``, an iterable of them, a
  zero-argument callable returning either, a decorated function, or a folder of YAML files.

Registration is idempotent: one object seen twice (an entry point naming a decorated function, a
module imported again, discovery run twice) is one task. Two different definitions of one name
are an error that names both origins.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from bench.errors import SpecError
from bench.specs import TaskSpec, parse_spec, read_yaml

ENTRY_POINT_GROUP = "bench.tasks"
TASKS_PATH_ENV = "BENCH_TASKS_PATH"
PLUGINS_ENV = "BENCH_PLUGINS"


@dataclass(frozen=True)
class RegisteredTask:
    spec: TaskSpec
    # Folder that relative data paths in the spec are resolved against (None for Python tasks).
    base_dir: Path | None
    origin: str


_PYTHON_TASKS: dict[str, RegisteredTask] = {}
# The object each Python task was registered from (the decorated function or the spec), so an entry
# point naming that same object is recognised as the same task, not a second definition.
_REGISTERED_FROM: dict[str, object] = {}

T = TypeVar("T")


def _python_origin(obj: object, caller_module: str | None) -> str:
    """``python:module.qualname`` of a decorated function; ``python:module`` of a bare spec."""
    if isinstance(obj, TaskSpec):
        return f"python:{caller_module or '?'}"
    module = getattr(obj, "__module__", None) or caller_module or "?"
    return f"python:{module}.{getattr(obj, '__qualname__', type(obj).__name__)}"


def _origin_module(origin: str) -> str:
    return origin.removeprefix("python:")


def register_task(obj: T) -> T:
    """Register a ``TaskSpec`` or a zero-argument function returning one (usable as a decorator).

    Registering the same spec from the same place again (a module imported twice, reloaded) is a
    no-op; another spec under a registered name is an error naming both places.
    """
    spec = obj() if callable(obj) and not isinstance(obj, TaskSpec) else obj
    if not isinstance(spec, TaskSpec):
        raise SpecError(f"register_task expects a TaskSpec, got {type(spec).__name__}")
    # The registering module names a bare spec's origin (a spec does not know where it was built).
    caller = sys._getframe(1).f_globals.get("__name__")
    origin = _python_origin(obj, caller if isinstance(caller, str) else None)
    existing = _PYTHON_TASKS.get(spec.name)
    if existing is not None and (existing.origin != origin or existing.spec != spec):
        raise SpecError(
            f"task {spec.name!r} is registered twice: by {existing.origin} and by {origin}"
        )
    _PYTHON_TASKS[spec.name] = RegisteredTask(spec, None, origin)
    _REGISTERED_FROM[spec.name] = obj
    return obj


def _is_registered(obj: object) -> bool:
    return any(obj is registered for registered in _REGISTERED_FROM.values())


def _module_tasks(module_name: str) -> list[str]:
    """Names of the Python tasks registered by ``module_name`` (or a module inside it)."""
    return [
        name
        for name, item in _PYTHON_TASKS.items()
        if _origin_module(item.origin) == module_name
        or _origin_module(item.origin).startswith(module_name + ".")
    ]


def load_plugins() -> list[str]:
    """Import the modules named in ``$BENCH_PLUGINS`` (comma-separated), so that their
    ``@register_task`` decorators run; a module that fails to import is a one-line SpecError.
    Returns the module names. Importing is cached by Python, so calling this again is cheap."""
    names = [n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(",") if n.strip()]
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a broken plug-in must not take the whole CLI down
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            hint = " (is it installed, or on PYTHONPATH?)" if isinstance(exc, ImportError) else ""
            raise SpecError(
                f"{PLUGINS_ENV} module {name!r} failed to import{hint}: "
                f"{type(exc).__name__}: {first}"
            ) from None
    return names


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
    """The tasks an entry point's loaded object stands for. Objects registered with
    ``@register_task`` (or a module that registers them) add nothing here: loading the entry
    point has imported their module, so they are among the Python tasks already."""
    if inspect.ismodule(value):
        if not _module_tasks(value.__name__):
            raise SpecError(
                f"entry point {origin} names module {value.__name__}, which registers no task "
                "(decorate a TaskSpec function with @register_task, or name the object)"
            )
        return []
    if _is_registered(value):
        return []
    if callable(value) and not isinstance(value, TaskSpec):
        value = value()
    if isinstance(value, str | Path):
        folder = Path(value)
        return [RegisteredTask(load_task_file(p), p.parent, str(p)) for p in _yaml_files(folder)]
    if not isinstance(value, TaskSpec | Iterable):
        raise SpecError(f"entry point {origin} gave {type(value).__name__}, not a TaskSpec")
    items: Iterable[Any] = [value] if isinstance(value, TaskSpec) else value
    out = []
    for item in items:
        if not isinstance(item, TaskSpec):
            raise SpecError(f"entry point {origin} gave {type(item).__name__}, not a TaskSpec")
        if not _is_registered(item):
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
    # Plug-ins first: importing them is what registers their decorated tasks.
    load_plugins()
    from_entry_points = _entry_point_tasks()
    found += list(_PYTHON_TASKS.values())
    found += from_entry_points
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
    saved_from = dict(_REGISTERED_FROM)

    def restore() -> None:
        _PYTHON_TASKS.clear()
        _PYTHON_TASKS.update(saved)
        _REGISTERED_FROM.clear()
        _REGISTERED_FROM.update(saved_from)

    return restore

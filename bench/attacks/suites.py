"""Attack suites: named, versioned lists of attacks, read from YAML.

Built-in suites live in ``tasks/suites/`` (shipped in the wheel as ``bench/_builtin_tasks/suites``,
found the way :func:`bench.tasks.registry.builtin_tasks_dir` finds the task folder). A suite is
named by its file's stem or given as a path to a YAML file. YAML is data: ``safe_load`` only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench.attacks.specs import SuiteSpec
from bench.errors import SpecError
from bench.specs import parse_spec, read_yaml


def builtin_suites_dir() -> Path:
    """``suites/`` inside the built-in task folder (packaged, or the repository's ``tasks/``)."""
    from bench.tasks.registry import builtin_tasks_dir

    return builtin_tasks_dir() / "suites"


def _suite_files() -> dict[str, Path]:
    folder = builtin_suites_dir()
    if not folder.is_dir():
        return {}
    return {
        p.stem: p for p in sorted(folder.iterdir()) if p.suffix in {".yaml", ".yml"} and p.is_file()
    }


def list_suites() -> list[str]:
    """Names of the built-in suites."""
    return sorted(_suite_files())


def parse_suite(data: Any, origin: str) -> SuiteSpec:
    """Validate plain data as a suite (one-line SpecError naming the field)."""
    return parse_spec(SuiteSpec, data, origin, "a suite")


def load_suite_file(path: Path) -> SuiteSpec:
    return parse_suite(read_yaml(path, "suite"), str(path))


def _has_separator(text: str) -> bool:
    return os.sep in text or (os.altsep is not None and os.altsep in text)


def load_suite(name_or_path: str | Path, check: bool = True) -> SuiteSpec:
    """A built-in suite by name, or a suite YAML file by path.

    ``check`` also resolves every attack (recipes, components, parameters), so a suite with an
    unknown recipe or component fails here, before any model is loaded; the error names the file.
    """
    from bench.errors import shown

    as_path = Path(name_or_path)
    text = str(name_or_path)
    if as_path.suffix.lower() in {".yaml", ".yml"} or _has_separator(text):
        if as_path.is_dir():
            raise SpecError(f"suite file {as_path} is a directory")
        if not as_path.exists():
            raise SpecError(f"suite file {as_path} does not exist")
        path = as_path
    else:
        files = _suite_files()
        if text not in files and as_path.is_dir():
            # A folder is not a suite, whatever its name; a built-in name wins over a folder.
            raise SpecError(
                f"suite {shown(text, 60)} is a folder; give a suite YAML file or a built-in "
                f"name ({', '.join(sorted(files)) or 'none'})"
            )
        if text not in files:
            known = ", ".join(sorted(files)) or "none"
            raise SpecError(
                f"unknown attack suite {shown(text, 60)} (known: {known}; or a YAML path)"
            )
        path = files[text]
    suite = load_suite_file(path)
    if check:
        from bench.attacks.recipes import resolve

        for attack in suite.attacks:
            try:
                resolve(attack)
            except SpecError as exc:
                raise SpecError(f"{path}: {exc}") from None
    return suite

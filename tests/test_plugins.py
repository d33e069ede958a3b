"""Plug-in tasks: entry points (group ``bench.tasks``) and ``BENCH_PLUGINS`` modules.

A plug-in package is built in a temporary folder: its module, and a ``*.dist-info`` folder whose
``entry_points.txt`` declares the entry points, put on ``sys.path`` (or ``PYTHONPATH`` for the
command line), so ``importlib.metadata`` finds it like any installed distribution.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from conftest import assert_user_error

from bench.errors import SpecError
from bench.tasks import discover_tasks, get_task
from bench.tasks.registry import _reset_python_tasks_for_tests

REPO = Path(__file__).resolve().parents[1]
NLI = ["entailment", "neutral", "contradiction"]
ROWS = [
    {"premise": "the dog runs in the park", "hypothesis": "a dog runs", "label": "entailment"},
    {"premise": "the cat sleeps", "hypothesis": "the cat runs", "label": "contradiction"},
    {"premise": "a man eats", "hypothesis": "the man is happy", "label": "neutral"},
    {"premise": "the film was great", "hypothesis": "the film was bad", "label": "contradiction"},
]


def _task_function(name: str, data: Path, decorated: bool = True) -> str:
    return textwrap.dedent(
        f"""
        {"@register_task" if decorated else ""}
        def {name}() -> TaskSpec:
            return TaskSpec(
                name={name!r},
                source={{"type": "local", "path": {str(data)!r}}},
                inputs=["premise", "hypothesis"],
                labels={NLI!r},
                splits={{"fractions": {{"test": 1.0}}}},
            )
        """
    )


def make_plugin(
    root: Path,
    module: str,
    tasks: list[str],
    entry_points: dict[str, str],
    undecorated: Sequence[str] = (),
) -> Path:
    """A plug-in distribution in ``root``: ``module.py`` defining one ``@register_task``
    function per name in ``tasks`` (and plain functions for ``undecorated``), a data file, and
    ``<module>-0.1.dist-info`` declaring ``entry_points`` in the ``bench.tasks`` group."""
    root.mkdir(parents=True, exist_ok=True)
    data = root / f"{module}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    body = "from bench import register_task\nfrom bench.specs import TaskSpec\n"
    body += "".join(_task_function(t, data) for t in tasks)
    body += "".join(_task_function(t, data, decorated=False) for t in undecorated)
    (root / f"{module}.py").write_text(body)
    if entry_points:
        info = root / f"{module}-0.1.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
        lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
        (info / "entry_points.txt").write_text("[bench.tasks]\n" + lines)
    importlib.invalidate_caches()
    return root


@pytest.fixture
def clean_registry() -> Iterator[None]:
    """Restore the Python task registry and forget the plug-in modules a test imported."""
    restore = _reset_python_tasks_for_tests()
    before = set(sys.modules)
    yield
    restore()
    for name in set(sys.modules) - before:
        if name.startswith("plug_"):
            del sys.modules[name]


# ----------------------------------------------------------------------------------- in process


def test_entry_points_to_module_decorated_function_and_factory_survive_repeated_discovery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_registry: None
) -> None:
    make_plugin(
        tmp_path,
        "plug_mixed",
        tasks=["plug_by_module", "plug_by_function"],
        undecorated=["plug_factory"],
        entry_points={
            "whole": "plug_mixed",  # a module: its decorators register its tasks
            "one": "plug_mixed:plug_by_function",  # a decorated function (registered already)
            "made": "plug_mixed:plug_factory",  # a plain function returning a spec
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    first = discover_tasks()
    # The bug: the second lookup saw each decorated task twice (registry and entry point).
    second = discover_tasks()
    for found in (first, second):
        assert {"plug_by_module", "plug_by_function", "plug_factory"} <= set(found)
    assert second["plug_by_function"].origin == "python:plug_mixed.plug_by_function"
    assert second["plug_by_module"].origin == "python:plug_mixed.plug_by_module"
    assert second["plug_factory"].origin == "entry-point:made"
    # What `bench run --task a --task b` does: one lookup per task.
    assert get_task("plug_by_module").spec.name == "plug_by_module"
    assert get_task("plug_by_function").spec.name == "plug_by_function"


def test_two_different_definitions_of_one_name_name_both_origins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_registry: None
) -> None:
    # The plug-in registers `plug_clash` with a decorator and also hands out a different spec
    # of that name through a factory entry point.
    make_plugin(
        tmp_path,
        "plug_clash_mod",
        tasks=["plug_clash"],
        entry_points={"mod": "plug_clash_mod", "other": "plug_clash_mod:other"},
    )
    with (tmp_path / "plug_clash_mod.py").open("a") as handle:
        handle.write(
            "\ndef other() -> TaskSpec:\n"
            "    return plug_clash().model_copy(update={'description': 'another one'})\n"
        )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SpecError) as info:
        discover_tasks()
    message = str(info.value)
    assert "'plug_clash' is defined twice" in message
    assert "python:plug_clash_mod.plug_clash" in message and "entry-point:other" in message


def test_registering_again_from_the_same_place_is_a_no_op_but_a_changed_spec_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_registry: None
) -> None:
    make_plugin(tmp_path, "plug_reload", tasks=["plug_again"], entry_points={})
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("plug_reload")
    importlib.reload(module)  # the decorator runs again, same spec, same origin
    assert discover_tasks()["plug_again"].origin == "python:plug_reload.plug_again"
    source = tmp_path / "plug_reload.py"
    source.write_text(source.read_text().replace("test", "train"))
    with pytest.raises(SpecError, match="'plug_again' is registered twice") as info:
        importlib.reload(module)
    assert str(info.value).count("python:plug_reload.plug_again") == 2


def test_entry_point_naming_a_module_without_tasks_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_registry: None
) -> None:
    make_plugin(tmp_path, "plug_empty", tasks=[], entry_points={"empty": "plug_empty"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SpecError, match="names module plug_empty, which registers no task"):
        discover_tasks()


def test_bench_plugins_imports_decorated_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_registry: None
) -> None:
    make_plugin(tmp_path, "plug_env_a", tasks=["plug_env_task_a"], entry_points={})
    make_plugin(tmp_path, "plug_env_b", tasks=["plug_env_task_b"], entry_points={})
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "plug_env_task_a" not in discover_tasks()  # nothing imports the module
    monkeypatch.setenv("BENCH_PLUGINS", "plug_env_a, plug_env_b")
    found = discover_tasks()
    assert found["plug_env_task_a"].origin == "python:plug_env_a.plug_env_task_a"
    assert "plug_env_task_b" in discover_tasks()  # and again: no "defined twice"
    monkeypatch.setenv("BENCH_PLUGINS", "plug_env_a,plug_no_such_module")
    with pytest.raises(SpecError, match="BENCH_PLUGINS module 'plug_no_such_module'") as info:
        discover_tasks()
    assert "\n" not in str(info.value)


# -------------------------------------------------------------------------------- command line


def _bench(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join([env.pop("PLUGIN_PATH"), str(REPO)])
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": path, **env}
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
    )


def test_plugin_tasks_through_bench_run(tiny_model_dir: Path, tmp_path: Path) -> None:
    plugin = make_plugin(
        tmp_path / "site",
        "plug_cli",
        tasks=["plug_cli_one", "plug_cli_two"],
        entry_points={"cli": "plug_cli"},
    )
    proc = _bench(
        "run",
        "--task",
        "plug_cli_one",
        "--task",
        "plug_cli_two",
        "--model",
        f"tiny={tiny_model_dir}",
        "--db",
        str(tmp_path / "r.sqlite"),
        "--no-progress",
        env={"PLUGIN_PATH": str(plugin)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = [line for line in proc.stdout.splitlines() if line.startswith("| tiny")]
    assert len(table) == 1, proc.stdout
    header = next(line for line in proc.stdout.splitlines() if line.startswith("| model"))
    assert "plug_cli_one" in header and "plug_cli_two" in header


def test_bench_plugins_through_the_command_line(tmp_path: Path) -> None:
    plugin = make_plugin(tmp_path, "plug_cli_env", tasks=["plug_env_listed"], entry_points={})
    listed = _bench("tasks", "list", env={"PLUGIN_PATH": str(plugin)})
    assert listed.returncode == 0 and "plug_env_listed" not in listed.stdout
    listed = _bench(
        "tasks", "list", env={"PLUGIN_PATH": str(plugin), "BENCH_PLUGINS": "plug_cli_env"}
    )
    assert listed.returncode == 0, listed.stderr
    assert "plug_env_listed" in listed.stdout
    broken = _bench(
        "tasks", "list", env={"PLUGIN_PATH": str(plugin), "BENCH_PLUGINS": "plug_missing_mod"}
    )
    assert_user_error(broken, "BENCH_PLUGINS module 'plug_missing_mod'")

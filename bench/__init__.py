"""nlp-bench: evaluation and robustness benchmark harness for fine-tuned NLP models.

Public names are importable from here. Every module behind them (even ``bench.specs``, which
imports pydantic) is loaded only when one of its names is first used, so ``import bench`` (and
with it ``bench --help``) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bench._version import __version__
from bench.errors import (
    AssetError,
    AssetUnavailableError,
    BenchError,
    DataError,
    ModelError,
    SpecError,
)

if TYPE_CHECKING:  # the real types for checkers; at run time __getattr__ imports them on demand
    from bench.specs import (
        ArithmeticSource,
        BigBenchSource,
        EvalConfig,
        HubSource,
        LocalSource,
        ModelSpec,
        SplitPlan,
        TaskSpec,
        ThresholdLabels,
        VaderSource,
    )

_SPECS = (
    "ArithmeticSource",
    "BigBenchSource",
    "EvalConfig",
    "HubSource",
    "LocalSource",
    "ModelSpec",
    "SplitPlan",
    "TaskSpec",
    "ThresholdLabels",
    "VaderSource",
)

_LAZY = {
    **dict.fromkeys(_SPECS, "bench.specs"),
    "Example": "bench.tasks",
    "TaskData": "bench.tasks",
    "get_task": "bench.tasks",
    "discover_tasks": "bench.tasks",
    "load_task_data": "bench.tasks",
    "register_task": "bench.tasks",
    "ResultStore": "bench.store",
    "Evaluator": "bench.runner",
    "EvalResult": "bench.runner",
    "HFClassifier": "bench.models.classifier",
    "align_labels": "bench.models.labels",
    "FinetuneConfig": "bench.finetune",
    "finetune": "bench.finetune",
    "compute_metrics": "bench.metrics",
    "bootstrap_ci": "bench.metrics",
    "MetricValue": "bench.metrics",
    "ResultRow": "bench.report.leaderboard",
    "render": "bench.report.leaderboard",
    "run_default": "bench.defaults",
    "evaluate": "bench.api",
    "prompt": "bench.api",
    "attack": "bench.api",
    "run": "bench.api",
    "Results": "bench.api",
    "Engine": "bench.engine",
    "RunOutcome": "bench.engine",
    "RunRecord": "bench.records",
    "MetricSettings": "bench.records",
}

__all__ = [
    "ArithmeticSource",
    "AssetError",
    "AssetUnavailableError",
    "BenchError",
    "BigBenchSource",
    "DataError",
    "EvalConfig",
    "HubSource",
    "LocalSource",
    "ModelError",
    "ModelSpec",
    "SpecError",
    "SplitPlan",
    "TaskSpec",
    "ThresholdLabels",
    "VaderSource",
    "__version__",
    *sorted(set(_LAZY) - set(_SPECS)),
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

"""The run engine: one controller for every kind of run, and the kinds' small interface.

``Engine.run(plan)`` answers a planned run from the store or computes what is missing;
``Engine.summarize`` derives a summary run (suite, prompt set) from member runs;
``run_metrics`` gives any stored run's metrics under any metric settings, from its rows.
"""

from bench.engine.controller import Engine, EngineClient, library_versions, run_metrics
from bench.engine.kinds import (
    RunKind,
    RunOutcome,
    RunPlan,
    SummaryKind,
    WorkUnit,
    get_kind,
    new_plan,
    register_kind,
)

__all__ = [
    "Engine",
    "EngineClient",
    "RunKind",
    "RunOutcome",
    "RunPlan",
    "SummaryKind",
    "WorkUnit",
    "get_kind",
    "library_versions",
    "new_plan",
    "register_kind",
    "run_metrics",
]

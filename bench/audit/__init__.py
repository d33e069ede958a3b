"""Robustness audits: ``bench audit`` computes what the store lacks (clean evaluation, attack
suites, behavioural tests, annotations of adversarial examples) and writes one self-contained
HTML page and a JSON file with every number.

``bench.audit.collect`` runs and gathers, ``bench.audit.report`` renders, ``bench.audit.explain``
is the run kind that annotates adversarial examples (similarity, integrated gradients) and
``bench.audit.attributions`` computes integrated gradients and faithfulness. See docs/audits.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.audit.collect import AuditOptions, AuditResult
    from bench.specs import ModelSpec


def audit(
    model: str | ModelSpec,
    tasks: Sequence[str | Path | Any],
    *,
    baseline: str | ModelSpec | None = None,
    options: AuditOptions | None = None,
    db: str | Path | None = None,
    out: str | Path | None = None,
    tasks_dir: Sequence[Path] = (),
    progress: bool = False,
    executor: Any = None,
) -> tuple[AuditResult, list[Path]]:
    """Audit ``model`` on ``tasks`` (optionally against ``baseline``); the result and the files
    written (``index.html``, ``audit.json`` in ``out``, default ``reports/audit/<model>-<tasks>``).

    ``executor`` (``bench.api.executor("ray", workers=4)``, say) computes the missing runs on
    Ray workers; the report is the same. Bad input (a suite file, a task, labels that differ from the baseline's, an output folder
    that cannot be written) is refused before anything is computed.
    """
    from bench.api import load_tasks, model_spec
    from bench.attacks.suites import load_suite
    from bench.audit.collect import AuditOptions, default_out, run_audit
    from bench.audit.report import write_report
    from bench.behave.spec import load_behave_suite
    from bench.errors import BenchError
    from bench.paths import check_output_dir
    from bench.specs import ModelSpec
    from bench.store import ResultStore

    if isinstance(out, str) and not out.strip():
        # Path("") is the current folder: an empty --out would write the report there.
        raise BenchError("--out is empty; name the report folder")
    options = options or AuditOptions()
    options.check()
    suites = [load_suite(s) for s in options.suites]
    behave = load_behave_suite(options.behave_suite) if options.behave_suite else None
    spec = model if isinstance(model, ModelSpec) else model_spec(model)
    base = baseline
    if isinstance(base, str):
        base = model_spec(base)
    if base is not None and base.name == spec.name:
        raise BenchError(f"--baseline is the audited model ({spec.name}); name another model")
    datas = _distinct_tasks(load_tasks(tasks, tasks_dir))
    folder = Path(out) if out is not None else default_out(spec.name, [d.spec.name for d in datas])
    check_output_dir(folder, "--out")
    with ResultStore(Path(db) if db is not None else None) as store:
        result = run_audit(
            store, spec, datas, suites, options, base, behave, progress, executor=executor
        )
    return result, write_report(result.data, folder)


def _distinct_tasks(datas: Sequence[Any]) -> list[Any]:
    """Each task once, in the order first given (a task named twice would be audited, and
    reported, twice); two different tasks of one name cannot share a report."""
    from bench.errors import BenchError, shown

    seen: dict[str, Any] = {}
    for d in datas:
        first = seen.setdefault(d.spec.name, d)
        if first.data_hash != d.data_hash:
            raise BenchError(
                f"two different tasks are named {shown(d.spec.name, 40)}; audit them apart"
            )
    return list(seen.values())

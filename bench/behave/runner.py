"""Behavioural tests as a run kind of the engine: (task, model, suite, seed) -> judged cases.

The suite is expanded before any model is loaded (a bad suite fails first); the run's key
hashes the task data, the model's identity, the suite's canonical form, the seed and the
prediction settings, so a rerun is answered from the store. Work units are chunks of cases, each
committed in one transaction; metrics (failure rate per test with a bootstrap CI) come from the
stored rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from bench.behave.expand import Case, check_fits, expand
from bench.behave.spec import BehaveSuite, BehaveTest
from bench.engine import Engine, EngineClient, RunOutcome, RunPlan, WorkUnit, new_plan
from bench.records import BehaveRow, BehaveRunConfig, MetricSettings, RunRecord
from bench.specs import EvalConfig, ModelSpec, sha256_text
from bench.store import BEHAVE_TABLE, ResultStore
from bench.tasks.examples import Example, TaskData

if TYPE_CHECKING:
    from bench.backends import Classifier, LoadSettings, ModelPool
    from bench.metrics import MetricValue
    from bench.models.labels import LabelAlignment

__all__ = ["BEHAVE", "BehaveKind", "BehaveRunner", "judge"]

# Cases per work unit (one transaction): both texts of a case go through the model together.
UNIT = 64


def judge(
    test: BehaveTest,
    expected: int,
    pred: int,
    pred_variant: int,
    probs: Sequence[float],
    probs_variant: Sequence[float],
) -> bool:
    """Whether a case passes its test.

    mft: the prediction is the expected label. inv: the variant's prediction equals the
    original's (a flip is a failure, whichever way). dir with a label only: the variant is
    predicted that label; with ``up`` (``down``): the variant's probability of the label is not
    below (above) the original's by more than the tolerance.
    """
    if test.type == "mft":
        return pred == expected
    if test.type == "inv":
        return pred == pred_variant
    assert test.expect is not None
    if test.expect.direction is None:
        return pred_variant == expected
    change = float(probs_variant[expected]) - float(probs[expected])
    if test.expect.direction == "up":
        return change >= -test.expect.tolerance
    return change <= test.expect.tolerance


@dataclass(frozen=True)
class _Detail:
    suite: BehaveSuite
    cases: list[Case]
    config: EvalConfig


@dataclass
class _Started:
    classifier: Classifier
    alignment: LabelAlignment
    batch_size: int


class BehaveKind:
    """One row per test case (inputs, variant, predictions, task probabilities, verdict)."""

    name = "behave"
    table = BEHAVE_TABLE

    def start(self, plan: RunPlan, models: ModelPool) -> tuple[_Started, RunRecord]:
        from bench.models.labels import align_labels

        detail: _Detail = plan.detail
        classifier = models.classifier(plan.model, load_settings(detail.config))
        alignment = align_labels(
            classifier.labels,
            plan.task.spec.labels,
            plan.task.spec.label_aliases,
            plan.model.label_map,
        )
        record = replace(
            plan.record,
            config=plan.record.config.model_copy(update={"device": classifier.device}),
            label_mapping=alignment.mapping,
        )
        return _Started(classifier, alignment, detail.config.batch_size), record

    def units(self, plan: RunPlan, state: _Started) -> list[WorkUnit]:
        n = len(plan.examples)
        return [WorkUnit(tuple(range(i, min(i + UNIT, n)))) for i in range(0, n, UNIT)]

    def compute(
        self, plan: RunPlan, state: _Started, units: Sequence[WorkUnit]
    ) -> Iterator[list[BehaveRow]]:
        import numpy as np

        detail: _Detail = plan.detail
        tests = {t.name: t for t in detail.suite.tests}
        for unit in units:
            cases = [detail.cases[p] for p in unit.positions]
            texts = [c.inputs for c in cases] + [c.variant for c in cases if c.variant]
            logits = state.classifier.classify(texts, state.batch_size)
            probs = state.alignment.to_task_probs(logits)
            preds = np.argmax(probs, axis=1)
            rows = []
            v = len(cases)
            for j, (p, case) in enumerate(zip(unit.positions, cases, strict=True)):
                if case.variant:
                    pv, probs_v = int(preds[v]), probs[v].tolist()
                    v += 1
                else:
                    pv, probs_v = -1, []
                passed = judge(
                    tests[case.test], case.expected, int(preds[j]), pv, probs[j].tolist(), probs_v
                )
                rows.append(
                    BehaveRow(
                        idx=p,
                        uid=case.uid,
                        test=case.test,
                        test_type=case.test_type,
                        inputs=list(case.inputs),
                        variant=list(case.variant),
                        expected=case.expected,
                        pred=int(preds[j]),
                        pred_variant=pv,
                        probs=probs[j].tolist(),
                        probs_variant=probs_v,
                        passed=passed,
                    )
                )
            yield rows

    def stats(self, state: _Started) -> dict[str, float]:
        return {}

    def metrics(
        self, store: ResultStore, record: RunRecord, settings: MetricSettings
    ) -> dict[str, MetricValue]:
        from bench.metrics import BEHAVE_METRICS, compute

        rows = store.behave_rows(record.run_key)
        data = behave_data(rows, _test_names(record))
        return compute(
            "behave", data, BEHAVE_METRICS, settings.n_bootstrap, settings.seed, settings.alpha
        )


BEHAVE = BehaveKind()


def _test_names(record: RunRecord) -> list[str]:
    config = record.config
    if isinstance(config, BehaveRunConfig) and config.tests:
        return [str(t["name"]) for t in config.tests]
    return []


def behave_data(rows: Sequence[BehaveRow], tests: Sequence[str]) -> Any:
    """The arrays behavioural metrics are computed from (tests in suite order; a test without
    cases, or one the record does not list, is kept after the listed ones)."""
    import numpy as np

    from bench.metrics import BehaveData

    names = list(tests)
    for r in rows:
        if r.test not in names:
            names.append(r.test)
    present = [n for n in names if any(r.test == n for r in rows)]
    index = {n: i for i, n in enumerate(present)}
    return BehaveData(
        failed=np.array([0.0 if r.passed else 1.0 for r in rows], dtype=np.float64),
        test_ids=np.array([index[r.test] for r in rows], dtype=np.int64),
        tests=tuple(present),
    )


def load_settings(config: EvalConfig) -> LoadSettings:
    from bench.backends import LoadSettings

    return LoadSettings(config.device, config.dtype, config.max_length)


@dataclass
class BehaveRunner(EngineClient):
    """Plans and runs behavioural suites; models load once, and only when something is missing."""

    store: ResultStore
    config: EvalConfig = field(default_factory=EvalConfig)
    progress: bool = True
    engine: Engine | None = None

    def plan(self, task: TaskData, model: ModelSpec, suite: BehaveSuite, origin: str) -> RunPlan:
        """The run of ``suite`` on ``model`` with ``task``'s labels (and, for tests whose source
        is the task, a seeded sample of its test split); refuses a suite the task cannot take."""
        from bench.tasks.loading import sample_examples

        task.spec.require_labels("behavioural tests")
        check_fits(suite, origin, task.spec.inputs, task.spec.labels, task.spec.name)
        needs_task = max((t.n for t in suite.tests if t.source == "task"), default=0)
        examples = (
            [ex.inputs for ex in sample_examples(task.split("test"), needs_task, self.config.seed)]
            if needs_task
            else []
        )
        cases = expand(suite, task.spec.labels, self.config.seed, examples)
        pool = self._engine.models
        identity = pool.identity(model)
        prediction = {
            "max_length": self.config.max_length,
            **pool.key_settings(model, load_settings(self.config)),
        }
        suite_hash = sha256_text(suite.canonical())
        config = BehaveRunConfig(
            **prediction,
            split="test",
            seed=self.config.seed,
            batch_size=self.config.batch_size,
            n_bootstrap=self.config.n_bootstrap,
            suite=suite.name,
            suite_version=suite.version,
            suite_hash=suite_hash,
            tests=[
                {
                    "name": t.name,
                    "capability": t.capability,
                    "type": t.type,
                    "cases": sum(c.test == t.name for c in cases),
                }
                for t in suite.tests
            ],
        )
        parts = {
            "label_map": dict(sorted(model.label_map.items())),
            "suite": suite_hash,
            "seed": self.config.seed,
            "cases": sha256_text("".join(c.uid for c in cases)),
            "config": prediction,
        }
        examples_ = [
            Example(idx=i, uid=c.uid, inputs=c.inputs, label=max(c.expected, 0))
            for i, c in enumerate(cases)
        ]
        return new_plan(
            BEHAVE,
            parts,
            task,
            model,
            identity,
            examples_,
            config,
            f"{task.spec.name} · behave/{suite.name}",
            _Detail(suite, cases, self.config),
            column=f"behave/{suite.name}",
            profile_hash=suite_hash[:12],
        )

    def run(self, plan: RunPlan) -> RunOutcome:
        return self._engine.run(plan)

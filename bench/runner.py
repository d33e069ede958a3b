"""Evaluation: a classifier's predictions on a task split, as a run kind of the engine.

``Evaluator`` plans (task, model) runs and hands them to the engine; the ``eval`` kind loads the
classifier through its backend, routes its labels to the task's (by name, never by position),
computes the length-sorted batches not yet stored, and derives the task's metrics from the
stored predictions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from bench.engine import Engine, EngineClient, RunOutcome, RunPlan, WorkUnit, new_plan
from bench.records import EvalRunConfig, MetricSettings, PredictionRow, RunRecord
from bench.specs import EvalConfig, ModelSpec
from bench.store import PREDICTION_TABLE, ResultStore
from bench.tasks.examples import TaskData
from bench.tasks.loading import sample_examples

if TYPE_CHECKING:
    from bench.backends import Classifier, ModelPool
    from bench.metrics import MetricValue
    from bench.models.labels import LabelAlignment

__all__ = ["EVAL", "EvalKind", "EvalResult", "Evaluator"]

# What evaluation returns (the engine's outcome type).
EvalResult = RunOutcome


@dataclass
class _Started:
    classifier: Classifier
    alignment: LabelAlignment
    inputs: list[tuple[str, ...]]
    batch_size: int


class EvalKind:
    """Classifier predictions: one row per example (label, prediction, probabilities in task
    label order, raw logits); work units are the classifier's length-sorted batches."""

    name = "eval"
    table = PREDICTION_TABLE

    def start(self, plan: RunPlan, models: ModelPool) -> tuple[_Started, RunRecord]:
        from bench.models.labels import align_labels

        config: EvalConfig = plan.detail
        classifier = models.classifier(plan.model, _load_settings(config))
        alignment = align_labels(
            classifier.labels, plan.task.spec.labels, plan.task.spec.label_aliases,
            plan.model.label_map,
        )  # fmt: skip
        record = replace(
            plan.record,
            config=plan.record.config.model_copy(update={"device": classifier.device}),
            label_mapping=alignment.mapping,
        )
        inputs = [ex.inputs for ex in plan.examples]
        return _Started(classifier, alignment, inputs, config.batch_size), record

    def units(self, plan: RunPlan, state: _Started) -> list[WorkUnit]:
        plan_ = state.classifier.batch_plan(state.inputs, state.batch_size)
        return [WorkUnit(tuple(batch)) for batch in plan_]

    def compute(
        self, plan: RunPlan, state: _Started, units: Sequence[WorkUnit]
    ) -> Iterator[list[PredictionRow]]:
        import numpy as np

        batches = [u.positions for u in units]
        for positions, logits in state.classifier.predict_batches(
            state.inputs, state.batch_size, plan=batches
        ):
            probs = state.alignment.to_task_probs(logits)
            preds = np.argmax(probs, axis=1)
            yield [
                PredictionRow(
                    idx=plan.examples[p].idx,
                    uid=plan.examples[p].uid,
                    label=plan.examples[p].label,
                    pred=int(preds[j]),
                    probs=probs[j].tolist(),
                    logits=logits[j].tolist(),
                )
                for j, p in enumerate(positions)
            ]

    def stats(self, state: _Started) -> dict[str, float]:
        return {}

    def metrics(
        self, store: ResultStore, record: RunRecord, settings: MetricSettings
    ) -> dict[str, MetricValue]:
        import numpy as np

        from bench.metrics import RUN_FIGURES, ClassificationData, compute

        rows = store.predictions(record.run_key)
        config = record.config
        names = list(config.metrics) if isinstance(config, EvalRunConfig) else ["accuracy"]
        data = ClassificationData(
            np.array([r.label for r in rows], dtype=np.int64),
            np.array([r.probs for r in rows], dtype=np.float64),
            tuple(record.label_names),
        )
        return compute(
            "classification",
            data,
            [*names, *RUN_FIGURES],
            settings.n_bootstrap,
            settings.seed,
            settings.alpha,
        )


EVAL = EvalKind()


def _load_settings(config: EvalConfig) -> Any:
    from bench.backends import LoadSettings

    return LoadSettings(config.device, config.dtype, config.max_length)


@dataclass
class Evaluator(EngineClient):
    """Plans and runs evaluations; each model is loaded at most once and only when something
    must be computed (through the engine's model pool)."""

    store: ResultStore
    config: EvalConfig = field(default_factory=EvalConfig)
    progress: bool = True
    engine: Engine | None = None

    def plan(self, task: TaskData, model: ModelSpec) -> RunPlan:
        """The run of ``model`` on ``task`` under this evaluator's settings; nothing is loaded
        but the model's identity (a local folder's files are hashed once)."""
        task.spec.require_labels("evaluating a classifier")
        pool = self._engine.models
        identity = pool.identity(model)
        prediction = {
            **self.config.identity(),
            **pool.key_settings(model, _load_settings(self.config)),
        }
        examples = sample_examples(
            task.split(self.config.split), self.config.limit, self.config.seed
        )
        config = EvalRunConfig(
            **prediction,
            seed=self.config.seed,
            batch_size=self.config.batch_size,
            n_bootstrap=self.config.n_bootstrap,
            metrics=list(task.spec.metrics),
        )
        parts = {"label_map": dict(sorted(model.label_map.items())), "config": prediction}
        label = f"{task.spec.name} · {model.name}"
        return new_plan(EVAL, parts, task, model, identity, examples, config, label, self.config)

    def key_for(self, task: TaskData, model: ModelSpec) -> str:
        return self.plan(task, model).key

    def warm(self, model: ModelSpec) -> None:
        """Identify and load ``model`` now (e.g. outside a timed section), as a run would."""
        self._engine.models.identity(model)
        self._engine.models.classifier(model, _load_settings(self.config))

    def evaluate(self, task: TaskData, model: ModelSpec) -> RunOutcome:
        return self._engine.run(self.plan(task, model))

"""The evaluation controller: (task, model, config) -> predictions and metrics in the store.

It owns nothing but orchestration: examples come from ``bench.tasks``, logits from
``bench.models``, numbers from ``bench.metrics``, persistence from ``bench.store``.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import metadata
from typing import TYPE_CHECKING, Any

from bench._version import __version__
from bench.errors import BenchError
from bench.models.labels import align_labels
from bench.progress import make_progress
from bench.specs import EvalConfig, ModelSpec
from bench.store import PredictionRow, ResultStore, RunRecord, StoredMetric, run_key
from bench.tasks.examples import TaskData
from bench.tasks.loading import sample_examples

if TYPE_CHECKING:
    from bench.models.classifier import HFClassifier

_VERSIONED = ("torch", "transformers", "tokenizers", "datasets", "numpy", "pandas")


def library_versions() -> dict[str, str]:
    out = {"bench": __version__, "python": platform.python_version()}
    for dist in _VERSIONED:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "absent"
    return out


@dataclass(frozen=True)
class EvalResult:
    record: RunRecord
    metrics: dict[str, StoredMetric]
    # True when every number came from the store and the model was never loaded.
    cached: bool
    computed: int = 0


@dataclass
class Evaluator:
    """Evaluates tasks with models, loading each model at most once and only when needed."""

    store: ResultStore
    config: EvalConfig = field(default_factory=EvalConfig)
    progress: bool = True
    _models: dict[str, HFClassifier] = field(default_factory=dict, init=False, repr=False)
    _identities: dict[str, dict[str, Any]] = field(default_factory=dict, init=False)

    def _model(self, spec: ModelSpec) -> HFClassifier:
        # Specs hold dicts (label maps), so they are keyed by their canonical JSON.
        key = spec.canonical()
        if key not in self._models:
            from bench.models.classifier import HFClassifier

            self._models[key] = HFClassifier.from_spec(
                spec, self.config.device, self.config.dtype, self.config.max_length
            )
        return self._models[key]

    def _identity(self, spec: ModelSpec) -> dict[str, Any]:
        key = spec.canonical()
        if key not in self._identities:
            from bench.models.identity import model_identity

            self._identities[key] = model_identity(spec.path, spec.revision)
        return self._identities[key]

    @cached_property
    def config_identity(self) -> dict[str, Any]:
        """The evaluation settings that enter run keys (fixed for this evaluator)."""
        from bench.models.classifier import resolve_device, resolve_dtype

        ident = self.config.identity()
        device = resolve_device(self.config.device)
        # "auto" means different numbers on different hardware: key on what it resolves to.
        ident["dtype"] = resolve_dtype(self.config.dtype, device)
        return ident

    def key_for(self, task: TaskData, model: ModelSpec) -> str:
        return run_key(
            {
                "kind": "eval",
                "task": task.data_hash,
                "model": self._identity(model)["hash"],
                "label_map": dict(sorted(model.label_map.items())),
                "config": self.config_identity,
                "harness": __version__,
            }
        )

    def evaluate(self, task: TaskData, model: ModelSpec) -> EvalResult:
        task.spec.require_labels("evaluating a classifier")
        key = self.key_for(task, model)
        existing = self.store.get_run(key)
        if existing is not None and existing.status == "complete":
            return EvalResult(existing, self.store.metrics(key), cached=True)

        examples = sample_examples(
            task.split(self.config.split), self.config.limit, self.config.seed
        )
        classifier = self._model(model)
        alignment = align_labels(
            classifier.labels, task.spec.labels, task.spec.label_aliases, model.label_map
        )
        ident = self._identity(model)
        record = self.store.begin_run(
            RunRecord(
                run_key=key,
                kind="eval",
                task=task.spec.name,
                task_version=task.spec.version,
                task_hash=task.data_hash,
                model=model.name,
                model_path=model.path,
                model_hash=ident["hash"],
                config={
                    **self.config_identity,
                    "batch_size": self.config.batch_size,
                    "device": classifier.device,
                },
                split=self.config.split,
                n_examples=len(examples),
                label_names=list(task.spec.labels),
                label_mapping=alignment.mapping,
                seed=self.config.seed,
                harness_version=__version__,
                versions=library_versions(),
            )
        )
        computed = self._predict(
            key, f"{task.spec.name} · {model.name}", examples, classifier, alignment
        )
        return EvalResult(self._finish(key, task, record), self.store.metrics(key), False, computed)

    def _predict(
        self,
        key: str,
        label: str,
        examples: Sequence[Any],
        classifier: HFClassifier,
        alignment: Any,
    ) -> int:
        import numpy as np

        done = self.store.done_indices(key)
        computed = 0
        with make_progress(self.progress) as bar:
            tid = bar.add_task(label, total=len(examples), completed=len(done))
            started = time.perf_counter()
            for positions, logits in classifier.predict_batches(
                [ex.inputs for ex in examples], self.config.batch_size, skip=done
            ):
                probs = alignment.to_task_probs(logits)
                preds = np.argmax(probs, axis=1)
                rows = [
                    PredictionRow(
                        idx=examples[p].idx,
                        uid=examples[p].uid,
                        label=examples[p].label,
                        pred=int(preds[j]),
                        probs=probs[j].tolist(),
                        logits=logits[j].tolist(),
                    )
                    for j, p in enumerate(positions)
                ]
                new = self.store.add_predictions(key, rows)
                computed += new
                bar.advance(tid, new)
            self.store.add_compute_time(key, time.perf_counter() - started)
        return computed

    def _finish(self, key: str, task: TaskData, record: RunRecord) -> RunRecord:
        import numpy as np

        from bench.metrics import compute_metrics, majority_rate

        rows = self.store.predictions(key)
        if len(rows) != record.n_examples:
            raise BenchError(
                f"run {key}: {len(rows)} stored predictions for {record.n_examples} examples"
            )
        labels = np.array([r.label for r in rows], dtype=np.int64)
        probs = np.array([r.probs for r in rows], dtype=np.float64)
        k = len(task.spec.labels)
        values = compute_metrics(
            labels,
            probs,
            list(task.spec.labels),
            list(task.spec.metrics),
            n_boot=self.config.n_bootstrap,
            seed=self.config.seed,
        )
        stored = [StoredMetric(key, name, v.value, v.low, v.high) for name, v in values.items()]
        stored.append(StoredMetric(key, "majority", majority_rate(labels, k), None, None))
        stored.append(StoredMetric(key, "n", float(len(rows)), None, None))
        self.store.finish_run(key, stored)
        final = self.store.get_run(key)
        assert final is not None
        return final

"""Adversarial-example annotations as a run kind: similarity for every successful adversarial
example of one attack run, integrated gradients and faithfulness for a budget of them.

The run's key hashes the attack run's key (so the model, task data and attack are pinned), the
sentence encoder's asset hash, the integrated-gradients settings and the seed that picks the
budgeted examples; a rerun is answered from the store. Work units are chunks of examples, each
committed in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from bench.audit.attributions import AOPC_FRACTIONS, DEFAULT_STEPS
from bench.engine import Engine, EngineClient, RunOutcome, RunPlan, WorkUnit, new_plan
from bench.records import AttackRow, ExplainRow, ExplainRunConfig, MetricSettings, RunRecord
from bench.specs import ModelSpec, sha256_text
from bench.store import EXPLAIN_TABLE, ResultStore
from bench.tasks.examples import Example, TaskData

if TYPE_CHECKING:
    from bench.attacks.runner import AttackRunner, AttackSettings
    from bench.audit.attributions import Attributor
    from bench.backends import ModelPool
    from bench.metrics import MetricValue

__all__ = ["EXPLAIN", "ExplainKind", "ExplainRunner", "ExplainSettings", "explain_data"]

# Examples per work unit (one transaction).
UNIT = 8
# The similarity a person would still read as the same sentence, as TextBugger's published
# sentence-encoder constraint has it (cosine 0.8); only the report uses it.
DEFAULT_THRESHOLD = 0.8


@dataclass(frozen=True)
class ExplainSettings:
    steps: int = DEFAULT_STEPS
    budget: int = 10
    seed: int = 0
    fractions: tuple[float, ...] = AOPC_FRACTIONS


@dataclass(frozen=True)
class _Detail:
    rows: dict[int, AttackRow]
    columns: list[int]
    chosen: frozenset[int]
    settings: ExplainSettings
    # Plain data, not the attack runner (which holds the store and the engine): a plan travels
    # to Ray workers.
    attack: AttackSettings


@dataclass
class _Started:
    encoder: Any
    attributor: Attributor | None
    seconds: float = 0.0


def chosen_examples(
    rows: Sequence[AttackRow], budget: int, seed: int, attack_run: str = ""
) -> frozenset[int]:
    """The successful examples explained: the first ``budget`` by a seeded hash of their uid and
    the attack run's key (independent of order, resumable; each attack of a suite explains its
    own sample, so faithfulness, measured on original texts, covers more of them). The key, not
    the attack's label: the explain run's key hashes it, while a label depends on the suite
    that asks (a run shared by two suites has a name in each)."""
    wins = [r for r in rows if r.status == "succeeded"]
    ranked = sorted(
        wins, key=lambda r: (sha256_text(f"{seed}:explain:{attack_run}:{r.uid}"), r.idx)
    )
    return frozenset(r.idx for r in ranked[:budget])


class ExplainKind:
    """One row per successful adversarial example: similarity, and the explanation if chosen."""

    name = "explain"
    table = EXPLAIN_TABLE

    def start(self, plan: RunPlan, models: ModelPool) -> tuple[_Started, RunRecord]:
        from bench.audit.attributions import Attributor
        from bench.models.labels import align_labels

        detail: _Detail = plan.detail
        from bench import assets
        from bench.attacks.runner import attack_resources

        assets.fetch(["minilm"], progress=False)  # one line per attack run otherwise
        encoder = attack_resources(detail.attack.masked_lm).encoder()
        classifier = models.classifier(plan.model, detail.attack.load_settings())
        alignment = align_labels(
            classifier.labels,
            plan.task.spec.labels,
            plan.task.spec.label_aliases,
            plan.model.label_map,
        )
        module = classifier.torch_module
        tokenizer = getattr(classifier, "tokenizer", None)
        attributor = None
        if module is not None and tokenizer is not None and detail.chosen:
            attributor = Attributor(
                module,
                tokenizer,
                alignment.matrix,
                steps=detail.settings.steps,
                max_length=detail.attack.config.max_length,
                fractions=detail.settings.fractions,
            )
        record = replace(
            plan.record,
            config=plan.record.config.model_copy(update={"device": classifier.device}),
            label_mapping=alignment.mapping,
        )
        return _Started(encoder, attributor), record

    def units(self, plan: RunPlan, state: _Started) -> list[WorkUnit]:
        n = len(plan.examples)
        return [WorkUnit(tuple(range(i, min(i + UNIT, n)))) for i in range(0, n, UNIT)]

    def compute(
        self, plan: RunPlan, state: _Started, units: Sequence[WorkUnit]
    ) -> Iterator[list[ExplainRow]]:
        import numpy as np

        detail: _Detail = plan.detail
        for unit in units:
            rows = [detail.rows[plan.examples[p].idx] for p in unit.positions]
            before = [" ".join(r.original[c] for c in detail.columns) for r in rows]
            after = [" ".join(r.perturbed[c] for c in detail.columns) for r in rows]
            a, b = state.encoder.encode(before), state.encoder.encode(after)
            similarity = np.clip((a * b).sum(axis=1), -1.0, 1.0)
            out = []
            for r, sim in zip(rows, similarity, strict=True):
                explanation = None
                if state.attributor is not None and r.idx in detail.chosen:
                    explanation = state.attributor.explain(
                        r.original,
                        r.perturbed,
                        r.original_pred,
                        int(sha256_text(f"{detail.settings.seed}:aopc:{r.uid}")[:8], 16),
                    )
                    state.seconds += explanation.seconds
                out.append(ExplainRow(r.idx, r.uid, float(sim), explanation))
            yield out

    def stats(self, state: _Started) -> dict[str, float]:
        return {"ig_seconds": state.seconds}

    def metrics(
        self, store: ResultStore, record: RunRecord, settings: MetricSettings
    ) -> dict[str, MetricValue]:
        from bench.metrics import EXPLAIN_METRICS, compute

        data = explain_data(store.explain_rows(record.run_key))
        return compute(
            "explain", data, EXPLAIN_METRICS, settings.n_bootstrap, settings.seed, settings.alpha
        )


EXPLAIN = ExplainKind()


def explain_data(rows: Sequence[ExplainRow], threshold: float = DEFAULT_THRESHOLD) -> Any:
    """The arrays explanation metrics are computed from."""
    import numpy as np

    from bench.metrics import ExplainData, ExplainedData

    done = [r.explanation for r in rows if r.explanation is not None]

    def col(name: str) -> np.ndarray:
        return np.array([getattr(e, name) for e in done], dtype=np.float64)

    explained = ExplainedData(
        comprehensiveness=col("comprehensiveness"),
        sufficiency=col("sufficiency"),
        comprehensiveness_random=col("comprehensiveness_random"),
        sufficiency_random=col("sufficiency_random"),
    )
    keep = np.isfinite(explained.comprehensiveness) & np.isfinite(explained.sufficiency)
    if not keep.all():  # texts without word pieces have no ranking to judge
        explained = ExplainedData(
            *(getattr(explained, f)[keep] for f in explained.__dataclass_fields__)
        )
    return ExplainData(
        similarity=np.array([r.similarity for r in rows], dtype=np.float64),
        explained=explained,
        delta=np.array(
            [d for e in done for d in (e.original.delta, e.adversarial.delta)], dtype=np.float64
        ),
        seconds=col("seconds"),
        threshold=threshold,
    )


@dataclass
class ExplainRunner(EngineClient):
    """Plans and runs annotations of attack runs, loading the model and the encoder once."""

    store: ResultStore
    attacks: AttackRunner
    settings: ExplainSettings = field(default_factory=ExplainSettings)
    progress: bool = True
    engine: Engine | None = None

    @property
    def config(self) -> Any:  # EngineClient reads the metric settings from here
        return self.attacks.config

    def plan(self, task: TaskData, model: ModelSpec, attack: RunOutcome) -> RunPlan:
        from bench import assets
        from bench.records import AttackRunConfig

        record = attack.record
        rows = self.store.attack_rows(record.run_key)
        wins = [r for r in rows if r.status == "succeeded"]
        config_ = record.config
        attacked = config_.attack_columns if isinstance(config_, AttackRunConfig) else []
        inputs = list(task.spec.inputs)
        columns = [inputs.index(c) for c in attacked if c in inputs] or [len(inputs) - 1]
        chosen = chosen_examples(rows, self.settings.budget, self.settings.seed, record.run_key)
        pool = self._engine.models
        identity = pool.identity(model)
        loaded = pool.key_settings(model, self.attacks.load_settings())
        encoder_hash = assets.get_spec("minilm").sha256
        config = ExplainRunConfig(
            **loaded,
            split=record.split,
            limit=record.config.limit,
            seed=self.settings.seed,
            max_length=self.attacks.config.max_length,
            n_bootstrap=self.attacks.config.n_bootstrap,
            attack_run=record.run_key,
            attack=record.column,
            ig_steps=self.settings.steps,
            ig_budget=self.settings.budget,
            aopc_fractions=list(self.settings.fractions),
            encoder=encoder_hash,
        )
        parts = {
            "label_map": dict(sorted(model.label_map.items())),
            "attack_run": record.run_key,
            "similarity": {"encoder": "minilm", "hash": encoder_hash, "columns": columns},
            "ig": {
                "steps": self.settings.steps,
                "method": "gausslegendre",
                "layer": "input word embeddings",
                "baseline": "special tokens kept, others padding",
                "output": "task-label probability",
                "budget": self.settings.budget,
                "seed": self.settings.seed,
                "choice": "seeded hash of the attack run key and uid",
            },
            "aopc": list(self.settings.fractions),
            "config": {**loaded, "max_length": self.attacks.config.max_length},
        }
        examples = [Example(r.idx, r.uid, tuple(r.original), r.label) for r in wins]
        detail = _Detail(
            {r.idx: r for r in wins}, columns, chosen, self.settings, self.attacks.settings
        )
        return new_plan(
            EXPLAIN,
            parts,
            task,
            model,
            identity,
            examples,
            config,
            f"{task.spec.name} · explain {record.column}",
            detail,
            column=f"{record.column}/explain",
            profile_hash=record.profile_hash,
        )

    def run(self, plan: RunPlan) -> RunOutcome:
        return self._engine.run(plan)

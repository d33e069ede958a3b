"""The prompting controller: (task, language model, shots, template) -> answers and metrics.

Beside :mod:`bench.runner` (fine-tuned classifiers), this poses tasks as prompts. A causal LM
scores each answer choice by loglikelihood (accuracy and length-normalised accuracy) or, for a
generation task, answers greedily and is scored by exact match of the answer read from its text.
An NLI classifier can answer a classification task zero-shot: each label becomes a hypothesis
and the most entailed one wins.

Each (task, model, shot count, template) is one run: its key hashes the task data, every piece
of the prompt format it used, the model and the settings, and every answered example is stored
(prompt included) one chunk per transaction, so a killed run resumes where it stopped. Per shot
count, a ``prompt_set`` run summarises the templates: mean accuracy with a bootstrap CI over
examples (each example's correctness averaged over templates) and the spread across templates,
i.e. how much the score depends on the wording.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from bench.engine import Engine, EngineClient, RunOutcome, RunPlan, WorkUnit, new_plan
from bench.errors import BenchError, ModelError, SpecError
from bench.prompts import PromptRequest, build_request, extract_answer, prompt_spec
from bench.records import (
    MetricSettings,
    PromptRow,
    PromptRunConfig,
    PromptSetRunConfig,
    RunRecord,
)
from bench.specs import ModelSpec, PromptConfig, canonical_json, sha256_text
from bench.store import PROMPT_TABLE, ResultStore
from bench.tasks.examples import Example, TaskData
from bench.tasks.loading import sample_examples

if TYPE_CHECKING:
    from bench.backends import Classifier, LanguageModel, LoadSettings, ModelPool
    from bench.metrics import MetricValue

Adapter = Literal["causal", "nli"]
# Questions answered per stored chunk: small enough that a kill loses little, large enough that
# the length-sorted batches inside a chunk are full.
_CHUNK = 32


def column_name(k: int, template: int | None = None) -> str:
    """``"3shot"`` for a shot count, ``"3shot/t2"`` for one template of it (1-based)."""
    return f"{k}shot" if template is None else f"{k}shot/t{template + 1}"


@dataclass(frozen=True)
class PlannedPrompt:
    """One (task, shot count, template) with its examples and their prompts, built before any
    model is loaded so a bad task fails first."""

    task: TaskData
    k: int
    template: int
    examples: list[Example]
    requests: list[PromptRequest]
    identity: dict[str, Any]

    @property
    def column(self) -> str:
        return column_name(self.k, self.template)


# What prompting returns (the engine's outcome type).
PromptOutcome = RunOutcome


@dataclass
class _Started:
    model: Any  # a LanguageModel, or a Classifier answering zero-shot
    nli: bool
    chat: bool
    batch_size: int


class PromptKind:
    """A task posed as prompts with one (shot count, template): one row per question (the exact
    prompt, the answers scored and their loglikelihoods, or the generated text); work units are
    chunks of 32 questions, longest prompts first."""

    name = "prompt"
    table = PROMPT_TABLE

    def start(self, plan: RunPlan, models: ModelPool) -> tuple[_Started, RunRecord]:
        config: PromptConfig = plan.detail.config
        planned: PlannedPrompt = plan.detail.planned
        nli = planned.identity.get("adapter") == "nli"
        model: Any
        if nli:
            model = models.classifier(plan.model, _load_settings(config, nli=True))
            chat = False
        else:
            model = models.language_model(plan.model, _load_settings(config, nli=False))
            chat = config.chat_template and model.has_chat_template
        record = replace(
            plan.record,
            config=plan.record.config.model_copy(
                update={"device": model.device, "chat_template_used": chat}
            ),
        )
        return _Started(model, nli, chat, config.batch_size), record

    def units(self, plan: RunPlan, state: _Started) -> list[WorkUnit]:
        planned: PlannedPrompt = plan.detail.planned
        # Longest prompts first: chunks then hold similar lengths, and a prompt too long for
        # memory fails at once rather than at the end.
        order = sorted(range(len(plan.examples)), key=lambda j: -len(planned.requests[j].context))
        return [WorkUnit(tuple(order[i : i + _CHUNK])) for i in range(0, len(order), _CHUNK)]

    def compute(
        self, plan: RunPlan, state: _Started, units: Sequence[WorkUnit]
    ) -> Iterator[list[PromptRow]]:
        planned: PlannedPrompt = plan.detail.planned
        for unit in units:
            if state.nli:
                yield _answer_nli(state.model, planned, unit.positions, state.batch_size)
            else:
                yield _answer_lm(state.model, planned, unit.positions, state.chat, state.batch_size)

    def stats(self, state: _Started) -> dict[str, Any]:
        # A served model counts its requests and retries; they are recorded with the run.
        counters = getattr(state.model, "counters", None)
        return dict(counters()) if callable(counters) else {}

    def metrics(
        self, store: ResultStore, record: RunRecord, settings: MetricSettings
    ) -> dict[str, MetricValue]:
        import numpy as np

        from bench.metrics import PromptData, compute, prompt_metric_names

        rows = store.prompt_rows(record.run_key)
        kind = record.config.task_kind if isinstance(record.config, PromptRunConfig) else ""
        data = PromptData(
            np.array([r.correct for r in rows], dtype=np.float64),
            np.array([r.correct_norm for r in rows], dtype=np.float64),
            np.array([r.label for r in rows], dtype=np.int64),
            len(record.label_names),
            kind,
        )
        names = prompt_metric_names(kind)
        return compute("prompt", data, names, settings.n_bootstrap, settings.seed, settings.alpha)


class PromptSetKind:
    """One (task, model, shot count) over its templates: the mean, its CI, the spread."""

    name = "prompt_set"

    def record(self, key: str, members: Sequence[RunRecord], detail: Any) -> RunRecord:
        first = members[0]
        assert isinstance(first.config, PromptRunConfig)
        config = PromptSetRunConfig(
            **first.config.model_dump(exclude={"template"}),
            templates=[m.config.template for m in members if isinstance(m.config, PromptRunConfig)],
        )
        # The set describes the same task, model and settings as its template runs.
        return replace(
            first,
            run_key=key,
            kind="prompt_set",
            config=config,
            column=column_name(first.config.k),
            profile_hash=None,
        )

    def metrics(
        self, store: ResultStore, record: RunRecord, settings: MetricSettings
    ) -> dict[str, MetricValue]:
        import numpy as np

        from bench.metrics import PromptData, compute, prompt_metric_names

        per_template = [store.prompt_rows(k) for k in record.members]
        indices = [r.idx for r in per_template[0]]
        if any([r.idx for r in rows] != indices for rows in per_template):
            raise BenchError("the templates of one prompt set ran on different examples")
        hits = np.array([[r.correct for r in rows] for rows in per_template], dtype=np.float64)
        hits_norm = np.array(
            [[r.correct_norm for r in rows] for rows in per_template], dtype=np.float64
        )
        kind = record.config.task_kind if isinstance(record.config, PromptSetRunConfig) else ""
        data = PromptData(
            hits.mean(axis=0),
            hits_norm.mean(axis=0),
            np.array([r.label for r in per_template[0]], dtype=np.int64),
            len(record.label_names),
            kind,
            per_template=hits.mean(axis=1),
        )
        names = prompt_metric_names(kind, summary=True)
        return compute("prompt", data, names, settings.n_bootstrap, settings.seed, settings.alpha)


PROMPT = PromptKind()
PROMPT_SET = PromptSetKind()


@dataclass(frozen=True)
class _Detail:
    planned: PlannedPrompt
    config: PromptConfig


def _load_settings(config: PromptConfig, nli: bool) -> LoadSettings:
    from bench.backends import LoadSettings

    # An NLI classifier's inputs are one premise and a short hypothesis: 256 tokens suffice.
    max_length = (config.max_length or 256) if nli else config.max_length
    return LoadSettings(config.device, config.dtype, max_length)


@dataclass
class PromptRunner(EngineClient):
    """Poses tasks to models as prompts, loading each model at most once."""

    store: ResultStore
    config: PromptConfig = field(default_factory=PromptConfig)
    progress: bool = True
    engine: Engine | None = None

    # ---------------------------------------------------------------------------------------------
    # Planning

    def plan(
        self,
        task: TaskData,
        shots: Sequence[int] | None = None,
        templates: Sequence[int] | None = None,
        adapter: Adapter = "causal",
    ) -> list[PlannedPrompt]:
        """Every (shot count, template) of ``task`` with its prompts; shot counts default to the
        spec's ``fewshot.k``, templates (0-based) to all of them."""
        spec = prompt_spec(task.spec)
        if adapter == "nli":
            return [self._plan_nli(task, shots)]
        ks = list(shots) if shots else [spec.fewshot.k]
        chosen = list(templates) if templates else list(range(len(spec.templates)))
        for t in chosen:
            if not 0 <= t < len(spec.templates):
                raise SpecError(
                    f"task {task.spec.name!r} has {len(spec.templates)} prompt template(s); no "
                    f"template {t + 1}"
                )
        examples = sample_examples(
            task.split(self.config.split), self.config.limit, self.config.seed
        )
        out = []
        for k in ks:
            pool = task.split(spec.fewshot.split) if k > 0 else []
            for t in chosen:
                requests = [build_request(task.spec, ex, pool, t, k) for ex in examples]
                out.append(PlannedPrompt(task, k, t, examples, requests, _identity(task, k, t)))
        return out

    def _plan_nli(self, task: TaskData, shots: Sequence[int] | None) -> PlannedPrompt:
        spec = prompt_spec(task.spec)
        name = task.spec.name
        if task.spec.kind != "classification" or spec.hypothesis is None:
            raise SpecError(
                f"task {name!r} cannot be answered zero-shot by an NLI model: it needs a "
                "classification task with a prompt hypothesis, e.g. hypothesis: 'This is {choice}.'"
            )
        if len(task.spec.inputs) != 1:
            raise SpecError(
                f"task {name!r} has {len(task.spec.inputs)} inputs; zero-shot NLI takes one text "
                "as the premise"
            )
        if shots and any(k != 0 for k in shots):
            raise SpecError("an NLI model answers zero-shot only; drop --shots or use --shots 0")
        examples = sample_examples(
            task.split(self.config.split), self.config.limit, self.config.seed
        )
        requests = [build_request(task.spec, ex, [], 0, 0) for ex in examples]
        return PlannedPrompt(task, 0, 0, examples, requests, prompt_identity(task, 0, 0, "nli"))

    def run_plan(self, planned: PlannedPrompt, model: ModelSpec) -> RunPlan:
        """The engine's plan for one (shot count, template) of ``model``."""
        pool = self._engine.models
        identity = pool.identity(model)
        nli = planned.identity.get("adapter") == "nli"
        answers = {
            **self.config.identity(),
            **pool.key_settings(model, _load_settings(self.config, nli)),
        }
        task = planned.task
        config = PromptRunConfig(
            **answers,
            seed=self.config.seed,
            batch_size=self.config.batch_size,
            n_bootstrap=self.config.n_bootstrap,
            k=planned.k,
            template=planned.template + 1,
            adapter="nli" if nli else "causal",
            task_kind=task.spec.kind,
        )
        return new_plan(
            PROMPT,
            {"prompt": planned.identity, "config": answers},
            task,
            model,
            identity,
            planned.examples,
            config,
            f"{task.spec.name} · {model.name} · {planned.column}",
            _Detail(planned, self.config),
            column=planned.column,
            profile_hash=sha256_text(canonical_json(planned.identity))[:12],
        )

    def key_for(self, planned: PlannedPrompt, model: ModelSpec) -> str:
        return self.run_plan(planned, model).key

    # ---------------------------------------------------------------------------------------------
    # Running

    def run(
        self, model: ModelSpec, planned: Sequence[PlannedPrompt]
    ) -> tuple[list[RunOutcome], list[RunOutcome]]:
        """Every planned prompt, then one summary per (task, shot count) over its templates."""
        outcomes = [self.run_one(model, p) for p in planned]
        groups: dict[tuple[str, int], list[RunOutcome]] = {}
        for p, o in zip(planned, outcomes, strict=True):
            groups.setdefault((p.task.data_hash, p.k), []).append(o)
        summaries = [self._engine.summarize(PROMPT_SET, group) for group in groups.values()]
        return outcomes, summaries

    def run_one(self, model: ModelSpec, planned: PlannedPrompt) -> RunOutcome:
        return self._engine.run(self.run_plan(planned, model))


def _answer_lm(
    lm: LanguageModel,
    planned: PlannedPrompt,
    chunk: Sequence[int],
    chat: bool,
    batch_size: int,
) -> list[PromptRow]:
    reqs = [planned.requests[j] for j in chunk]
    prompts = [lm.apply_chat_template(r.messages()) if chat else r.context for r in reqs]
    if planned.task.spec.kind == "generation":
        spec = prompt_spec(planned.task.spec)
        outputs = lm.greedy_until(
            [(p, list(spec.stop)) for p in prompts],
            max_new_tokens=spec.max_new_tokens,
            batch_size=batch_size,
        )
        rows = []
        for j, prompt, out in zip(chunk, prompts, outputs, strict=True):
            ex, req = planned.examples[j], planned.requests[j]
            answer = extract_answer(out, spec.answer_pattern, spec.answer_match)
            # The target is read with the same pattern, so "+5" and "5" style differences
            # in the data do not count against the model.
            gold = extract_answer(req.target, spec.answer_pattern, spec.answer_match)
            hit = answer != "" and answer == gold
            rows.append(
                PromptRow(
                    idx=ex.idx,
                    uid=ex.uid,
                    label=ex.label,
                    pred=-1,
                    pred_norm=-1,
                    scores=[],
                    prompt=prompt,
                    output=out,
                    answer=answer,
                    target=req.target,
                    correct=hit,
                    correct_norm=hit,
                    shots=req.shots,
                )
            )
        return rows
    from bench.models.causal import choose

    # With a chat template the answer opens the assistant turn: no delimiter before it.
    continuations = [r.answers if chat else r.choices for r in reqs]
    flat = [(p, c) for p, conts in zip(prompts, continuations, strict=True) for c in conts]
    scored = lm.loglikelihood(flat, batch_size=batch_size)
    rows = []
    pos = 0
    for j, prompt, conts in zip(chunk, prompts, continuations, strict=True):
        ex, req = planned.examples[j], planned.requests[j]
        logliks = [ll for ll, _, _ in scored[pos : pos + len(conts)]]
        pos += len(conts)
        # Normalised by the answer's own length, whatever delimiter precedes it.
        acc, acc_norm = choose(logliks, req.answers)
        rows.append(
            PromptRow(
                idx=ex.idx,
                uid=ex.uid,
                label=ex.label,
                pred=acc,
                pred_norm=acc_norm,
                scores=logliks,
                prompt=prompt,
                output=req.answers[acc],
                answer=req.answers[acc],
                target=req.answers[ex.label],
                correct=acc == ex.label,
                correct_norm=acc_norm == ex.label,
                shots=req.shots,
                choices=list(conts),
            )
        )
    return rows


def _answer_nli(
    classifier: Classifier, planned: PlannedPrompt, chunk: Sequence[int], batch_size: int
) -> list[PromptRow]:
    import numpy as np

    spec = prompt_spec(planned.task.spec)
    assert spec.hypothesis is not None
    entail = _entailment_index(classifier)
    answers = planned.requests[0].answers
    hypotheses = [spec.hypothesis.replace("{choice}", a) for a in answers]
    pairs = [(planned.examples[j].inputs[0], h) for j in chunk for h in hypotheses]
    logits = np.zeros((len(pairs), classifier.num_labels), dtype=np.float32)
    for positions, batch in classifier.predict_batches(pairs, batch_size):
        logits[positions] = batch
    # As the zero-shot pipelines do: the entailment logits of one example's hypotheses,
    # normalised against each other.
    ent = logits[:, entail].reshape(len(chunk), len(answers)).astype(np.float64)
    probs = np.exp(ent - ent.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    rows = []
    for row, j in enumerate(chunk):
        ex = planned.examples[j]
        pred = int(np.argmax(ent[row]))
        rows.append(
            PromptRow(
                idx=ex.idx,
                uid=ex.uid,
                label=ex.label,
                pred=pred,
                pred_norm=pred,
                scores=probs[row].tolist(),
                prompt=ex.inputs[0],
                output=answers[pred],
                answer=answers[pred],
                target=answers[ex.label],
                correct=pred == ex.label,
                correct_norm=pred == ex.label,
                shots=[],
                choices=hypotheses,
            )
        )
    return rows


def prompt_identity(
    task: TaskData, k: int, template: int, adapter: str = "causal"
) -> dict[str, Any]:
    """What a prompted run of ``task`` with ``k`` shots and template number ``template``
    (0-based) keys on: the pieces of the prompt format it uses (``adapter`` nli: the hypothesis
    and the answers). A submission bundle's validator compares it with a run's key parts."""
    if adapter == "nli":
        spec = prompt_spec(task.spec)
        return {"adapter": "nli", "hypothesis": spec.hypothesis, "choices": spec.choices}
    return _identity(task, k, template)


def _identity(task: TaskData, k: int, template: int) -> dict[str, Any]:
    """Every piece of the prompt format one (shot count, template) run uses, and nothing else:
    editing another template, or adding one, keeps this run's stored answers."""
    spec = prompt_spec(task.spec)
    ident: dict[str, Any] = {
        "template": spec.templates[template],
        "k": k,
        "instruction": spec.instruction,
        "target_delimiter": spec.target_delimiter,
        "fewshot_delimiter": spec.fewshot_delimiter,
        "choices": spec.choices,
    }
    if k > 0:
        ident["fewshot"] = {"split": spec.fewshot.split, "seed": spec.fewshot.seed}
    if task.spec.kind == "generation":
        ident.update(
            answer_pattern=spec.answer_pattern,
            answer_match=spec.answer_match,
            max_new_tokens=spec.max_new_tokens,
            stop=list(spec.stop),
        )
    return ident


def _entailment_index(classifier: Classifier) -> int:
    names = [n.lower() for n in classifier.labels]
    for i, name in enumerate(names):
        if name.startswith("entail"):
            return i
    raise ModelError(
        f"model {classifier.path} has no entailment label (labels: "
        f"{', '.join(classifier.labels)}); zero-shot NLI needs an NLI classifier"
    )

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

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from bench._version import __version__
from bench.errors import BenchError, ModelError, SpecError
from bench.progress import make_progress
from bench.prompts import PromptRequest, build_request, extract_answer, prompt_spec
from bench.runner import library_versions
from bench.specs import ModelSpec, PromptConfig, canonical_json, sha256_text
from bench.store import PromptRow, ResultStore, RunRecord, StoredMetric, run_key
from bench.tasks.examples import Example, TaskData
from bench.tasks.loading import sample_examples

if TYPE_CHECKING:
    import numpy as np

    from bench.models.causal import CausalLM
    from bench.models.classifier import HFClassifier

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


@dataclass(frozen=True)
class PromptOutcome:
    record: RunRecord
    metrics: dict[str, StoredMetric]
    cached: bool
    answered: int = 0


@dataclass
class PromptRunner:
    """Poses tasks to models as prompts, loading each model at most once."""

    store: ResultStore
    config: PromptConfig = field(default_factory=PromptConfig)
    progress: bool = True
    _lms: dict[str, CausalLM] = field(default_factory=dict, init=False, repr=False)
    _nli: dict[str, HFClassifier] = field(default_factory=dict, init=False, repr=False)
    _identities: dict[str, dict[str, Any]] = field(default_factory=dict, init=False)

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
        identity = {"adapter": "nli", "hypothesis": spec.hypothesis, "choices": spec.choices}
        return PlannedPrompt(task, 0, 0, examples, requests, identity)

    # ---------------------------------------------------------------------------------------------
    # Models

    def _identity(self, spec: ModelSpec) -> dict[str, Any]:
        key = spec.canonical()
        if key not in self._identities:
            from bench.models.identity import model_identity

            self._identities[key] = model_identity(spec.path, spec.revision)
        return self._identities[key]

    def _lm(self, spec: ModelSpec) -> CausalLM:
        key = spec.canonical()
        if key not in self._lms:
            from bench.models.causal import CausalLM

            self._lms[key] = CausalLM.from_spec(
                spec, self.config.device, self.config.dtype, self.config.max_length
            )
        return self._lms[key]

    def _classifier(self, spec: ModelSpec) -> HFClassifier:
        key = spec.canonical()
        if key not in self._nli:
            from bench.models.classifier import HFClassifier

            self._nli[key] = HFClassifier.from_spec(
                spec, self.config.device, self.config.dtype, self.config.max_length or 256
            )
        return self._nli[key]

    @cached_property
    def config_identity(self) -> dict[str, Any]:
        from bench.models.classifier import resolve_device, resolve_dtype

        ident = self.config.identity()
        ident["dtype"] = resolve_dtype(self.config.dtype, resolve_device(self.config.device))
        return ident

    def key_for(self, planned: PlannedPrompt, model: ModelSpec) -> str:
        return run_key(
            {
                "kind": "prompt",
                "task": planned.task.data_hash,
                "prompt": planned.identity,
                "model": self._identity(model)["hash"],
                "config": self.config_identity,
                "harness": __version__,
            }
        )

    # ---------------------------------------------------------------------------------------------
    # Running

    def run(
        self, model: ModelSpec, planned: Sequence[PlannedPrompt]
    ) -> tuple[list[PromptOutcome], list[PromptOutcome]]:
        """Every planned prompt, then one summary per (task, shot count) over its templates."""
        outcomes = [self.run_one(model, p) for p in planned]
        groups: dict[tuple[str, int], list[PromptOutcome]] = {}
        for p, o in zip(planned, outcomes, strict=True):
            groups.setdefault((p.task.data_hash, p.k), []).append(o)
        summaries = [self._summary(group) for group in groups.values()]
        return outcomes, summaries

    def run_one(self, model: ModelSpec, planned: PlannedPrompt) -> PromptOutcome:
        key = self.key_for(planned, model)
        existing = self.store.get_run(key)
        if existing is not None and existing.status == "complete":
            return PromptOutcome(existing, self.store.metrics(key), cached=True)
        nli = planned.identity.get("adapter") == "nli"
        adapter: Any = self._classifier(model) if nli else self._lm(model)
        task = planned.task
        chat = (not nli) and self.config.chat_template and adapter.has_chat_template
        self.store.begin_run(
            RunRecord(
                run_key=key,
                kind="prompt",
                task=task.spec.name,
                task_version=task.spec.version,
                task_hash=task.data_hash,
                model=model.name,
                model_path=model.path,
                model_hash=self._identity(model)["hash"],
                config={
                    **self.config_identity,
                    "column": planned.column,
                    "k": planned.k,
                    "template": planned.template + 1,
                    "adapter": "nli" if nli else "causal",
                    "task_kind": task.spec.kind,
                    "chat_template_used": chat,
                    "prompt_hash": sha256_text(canonical_json(planned.identity))[:12],
                    "batch_size": self.config.batch_size,
                    "device": adapter.device,
                },
                split=self.config.split,
                n_examples=len(planned.examples),
                label_names=list(task.spec.labels),
                label_mapping={},
                seed=self.config.seed,
                harness_version=__version__,
                versions=library_versions(),
            )
        )
        done = self.store.prompted_indices(key)
        todo = [j for j, ex in enumerate(planned.examples) if ex.idx not in done]
        label = f"{task.spec.name} · {model.name} · {planned.column}"
        answered = 0
        with make_progress(self.progress) as bar:
            tid = bar.add_task(label, total=len(planned.examples), completed=len(done))
            started = time.perf_counter()
            # Longest prompts first: chunks then hold similar lengths, and a prompt too long for
            # memory fails at once rather than at the end.
            todo.sort(key=lambda j: -len(planned.requests[j].context))
            for start in range(0, len(todo), _CHUNK):
                chunk = todo[start : start + _CHUNK]
                if nli:
                    rows = self._answer_nli(adapter, planned, chunk)
                else:
                    rows = self._answer_lm(adapter, planned, chunk, chat)
                new = self.store.add_prompt_rows(key, rows)
                answered += new
                bar.advance(tid, new)
            self.store.add_compute_time(key, time.perf_counter() - started)
        return PromptOutcome(self._finish(key, planned), self.store.metrics(key), False, answered)

    def _answer_lm(
        self, lm: CausalLM, planned: PlannedPrompt, chunk: Sequence[int], chat: bool
    ) -> list[PromptRow]:
        reqs = [planned.requests[j] for j in chunk]
        prompts = [lm.apply_chat_template(r.messages()) if chat else r.context for r in reqs]
        if planned.task.spec.kind == "generation":
            spec = prompt_spec(planned.task.spec)
            outputs = lm.greedy_until(
                [(p, list(spec.stop)) for p in prompts],
                max_new_tokens=spec.max_new_tokens,
                batch_size=self.config.batch_size,
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
        scored = lm.loglikelihood(flat, batch_size=self.config.batch_size)
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
                )
            )
        return rows

    def _answer_nli(
        self, classifier: HFClassifier, planned: PlannedPrompt, chunk: Sequence[int]
    ) -> list[PromptRow]:
        import numpy as np

        spec = prompt_spec(planned.task.spec)
        assert spec.hypothesis is not None
        entail = _entailment_index(classifier)
        answers = planned.requests[0].answers
        pairs = [
            (planned.examples[j].inputs[0], spec.hypothesis.replace("{choice}", a))
            for j in chunk
            for a in answers
        ]
        logits = np.zeros((len(pairs), classifier.num_labels), dtype=np.float32)
        for positions, batch in classifier.predict_batches(pairs, self.config.batch_size):
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
                )
            )
        return rows

    # ---------------------------------------------------------------------------------------------
    # Metrics

    def _finish(self, key: str, planned: PlannedPrompt) -> RunRecord:
        import numpy as np

        rows = self.store.prompt_rows(key)
        if len(rows) != len(planned.examples):
            raise BenchError(
                f"run {key}: {len(rows)} stored answers for {len(planned.examples)} examples"
            )
        metrics = _accuracy_metrics(
            np.array([r.correct for r in rows], dtype=np.float64),
            np.array([r.correct_norm for r in rows], dtype=np.float64),
            planned.task.spec.kind,
            [r.label for r in rows],
            len(planned.task.spec.labels),
            self.config,
        )
        self.store.finish_run(key, [StoredMetric(key, *m) for m in metrics])
        final = self.store.get_run(key)
        assert final is not None
        return final

    def _summary(self, outcomes: Sequence[PromptOutcome]) -> PromptOutcome:
        """One (task, model, shot count) over its templates: the mean, its CI, the spread."""
        import numpy as np

        keys = [o.record.run_key for o in outcomes]
        key = run_key({"kind": "prompt_set", "runs": keys, "harness": __version__})
        existing = self.store.get_run(key)
        if existing is not None and existing.status == "complete":
            return PromptOutcome(existing, self.store.metrics(key), cached=True)
        per_template = [self.store.prompt_rows(k) for k in keys]
        indices = [r.idx for r in per_template[0]]
        if any([r.idx for r in rows] != indices for rows in per_template):
            raise BenchError("the templates of one prompt set ran on different examples")
        first = outcomes[0].record
        # The set describes the same task, model and settings as its template runs.
        self.store.begin_run(
            replace(
                first,
                run_key=key,
                kind="prompt_set",
                config={
                    **{k: v for k, v in first.config.items() if k not in _PER_TEMPLATE},
                    "column": column_name(int(first.config["k"])),
                    "templates": [o.record.config["template"] for o in outcomes],
                    "prompt_runs": keys,
                },
            )
        )
        hits = np.array([[r.correct for r in rows] for rows in per_template], dtype=np.float64)
        hits_norm = np.array(
            [[r.correct_norm for r in rows] for rows in per_template], dtype=np.float64
        )
        metrics = _accuracy_metrics(
            hits.mean(axis=0),
            hits_norm.mean(axis=0),
            str(first.config["task_kind"]),
            [r.label for r in per_template[0]],
            len(first.label_names),
            self.config,
        )
        per = hits.mean(axis=1)
        metrics.append(("n_templates", float(len(keys)), None, None))
        if len(keys) > 1:
            metrics.append(("spread", float(per.max() - per.min()), None, None))
            metrics.append(("template_sd", float(per.std(ddof=1)), None, None))
        self.store.finish_run(key, [StoredMetric(key, *m) for m in metrics])
        final = self.store.get_run(key)
        assert final is not None
        return PromptOutcome(final, self.store.metrics(key), cached=False)


# Config entries that describe one template's run, not the set.
_PER_TEMPLATE = {"column", "template", "prompt_hash"}


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


def _entailment_index(classifier: HFClassifier) -> int:
    names = [n.lower() for n in classifier.labels]
    for i, name in enumerate(names):
        if name.startswith("entail"):
            return i
    raise ModelError(
        f"model {classifier.path} has no entailment label (labels: "
        f"{', '.join(classifier.labels)}); zero-shot NLI needs an NLI classifier"
    )


def _accuracy_metrics(
    hits: np.ndarray,
    hits_norm: np.ndarray,
    kind: str,
    labels: Sequence[int],
    n_labels: int,
    config: PromptConfig,
) -> list[tuple[str, float, float | None, float | None]]:
    """Accuracy with its CI; length-normalised accuracy for scored choices, exact match (the
    same figure under lm-evaluation-harness's name) for generation; the majority-class rate of
    a classification task, the bar its accuracy must clear."""
    import numpy as np

    from bench.metrics import majority_rate, mean_ci

    accuracy = mean_ci(hits, config.n_bootstrap, config.seed)
    out: list[tuple[str, float, float | None, float | None]] = [
        ("accuracy", *accuracy),
        ("n", float(len(hits)), None, None),
    ]
    if kind == "generation":
        out.append(("exact_match", *accuracy))
    else:
        out.append(("accuracy_norm", *mean_ci(hits_norm, config.n_bootstrap, config.seed)))
    if kind == "classification" and len(labels):
        out.append(("majority", majority_rate(np.asarray(labels), n_labels), None, None))
    return out

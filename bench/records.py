"""The typed records every consumer reads: runs, per-example rows, metrics and their settings.

One schema for the store, the leaderboard, comparisons, gates and bundles. A run's settings are
typed per run kind (``EvalRunConfig``, ``PromptRunConfig``, ...), so no consumer reads a
kind-specific field back from JSON by string; the store keeps them as JSON and parses them back
into the kind's type, ignoring fields a later version dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from bench.specs import SEED_MAX, canonical_json, check_n_bootstrap, sha256_text

RunStatus = Literal["running", "complete", "failed"]


# --------------------------------------------------------------------------------------------------
# Metric settings: what turns stored rows into numbers (never part of a prediction run's key)


class MetricSettings(BaseModel):
    """How a run's metrics are computed from its stored rows: bootstrap resamples, confidence
    level and the bootstrap seed. Changing any of them recomputes metrics from the rows; no
    model is loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_bootstrap: Annotated[int, AfterValidator(check_n_bootstrap)] = 1000
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0)
    seed: int = Field(default=0, ge=0, le=SEED_MAX)

    @property
    def alpha(self) -> float:
        return 1.0 - self.confidence

    def key(self) -> str:
        """A short hash naming these settings in the store's metric rows."""
        return sha256_text(canonical_json(self.model_dump(mode="json")))[:12]


# --------------------------------------------------------------------------------------------------
# Run settings, typed per kind


class RunConfig(BaseModel):
    """Settings recorded with every run. Fields that can change numbers are in the run's key;
    ``batch_size``, ``device`` and the like are recorded for provenance only."""

    # Records written by other versions may carry fields this one does not know: ignore them.
    model_config = ConfigDict(extra="ignore", frozen=True)

    kind: ClassVar[str] = ""

    split: str = "test"
    limit: int | None = None
    seed: int = 0
    dtype: str = "float32"
    max_length: int | None = None
    batch_size: int | None = None
    device: str = ""
    # The bootstrap count the run was started with (provenance: metrics have their own settings).
    n_bootstrap: int = 1000
    # How the rows were computed when not in-process: executor, workers, shards, per-worker
    # throughput, retried units (provenance only).
    execution: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class EvalRunConfig(RunConfig):
    kind: ClassVar[str] = "eval"
    # The task's metrics, so they can be recomputed from rows without the task spec.
    metrics: list[str] = Field(default_factory=lambda: ["accuracy", "macro_f1", "ece"])


class PromptedConfig(RunConfig):
    """What prompted runs and their sets share: shots, adapter, task kind, chat formatting."""

    k: int = 0
    adapter: str = "causal"
    task_kind: str = "classification"
    chat_template: bool = True
    chat_template_used: bool = False


class PromptRunConfig(PromptedConfig):
    kind: ClassVar[str] = "prompt"
    template: int = 1


class PromptSetRunConfig(PromptedConfig):
    kind: ClassVar[str] = "prompt_set"
    templates: list[int] = Field(default_factory=list)


class AttackRunConfig(RunConfig):
    kind: ClassVar[str] = "attack"
    suite: str = ""
    attack: str = ""
    variant: str = ""
    attack_columns: list[str] = Field(default_factory=list)
    query_budget: int | None = None
    profile: dict[str, Any] = Field(default_factory=dict)
    concurrency: int | None = None


class SuiteRunConfig(RunConfig):
    kind: ClassVar[str] = "suite"
    suite: str = ""
    suite_version: str = "1"
    attacks: list[str] = Field(default_factory=list)
    attack_columns: list[str] = Field(default_factory=list)
    query_budget: int | None = None


# -- audits (issue 15): behavioural tests and adversarial-example annotations --------------


class BehaveRunConfig(RunConfig):
    """A behavioural test suite (templates and lexicons) expanded with a seed and run on a model."""

    kind: ClassVar[str] = "behave"
    suite: str = ""
    suite_version: str = "1"
    # SHA-256 of the suite's canonical JSON: a changed template or lexicon is another run.
    suite_hash: str = ""
    # The suite's tests in order: name, capability, type (mft, inv, dir) and case count.
    tests: list[dict[str, Any]] = Field(default_factory=list)


class ExplainRunConfig(RunConfig):
    """Annotations of one attack run's successful adversarial examples: sentence similarity
    (MiniLM) for all, integrated gradients and faithfulness for a budget of them."""

    kind: ClassVar[str] = "explain"
    attack_run: str = ""
    attack: str = ""
    ig_steps: int = 50
    ig_budget: int = 10
    aopc_fractions: list[float] = Field(default_factory=list)
    encoder: str = ""


# -- end of audits -------------------------------------------------------------------------

CONFIG_TYPES: dict[str, type[RunConfig]] = {
    cls.kind: cls
    for cls in (
        EvalRunConfig,
        PromptRunConfig,
        PromptSetRunConfig,
        AttackRunConfig,
        SuiteRunConfig,
        BehaveRunConfig,
        ExplainRunConfig,
    )
}


def parse_config(kind: str, data: dict[str, Any]) -> RunConfig:
    """A stored config as its kind's type (an unknown kind keeps the common fields)."""
    return CONFIG_TYPES.get(kind, RunConfig).model_validate(data)


# --------------------------------------------------------------------------------------------------
# Runs


@dataclass(frozen=True)
class RunRecord:
    """One run: what was run (task, model, settings), how it stands, and where it shows.

    ``column`` is the leaderboard column suffix (``""`` for a clean evaluation, ``typos`` for a
    suite, ``typos/deepwordbug`` for one attack, ``3shot`` / ``3shot/t1`` for prompts);
    ``profile_hash`` a short hash of an attack's constraint profile or a prompt format;
    ``members`` the runs a summary run (suite, prompt set) summarises, in order;
    ``key_parts`` what its key hashes.
    """

    run_key: str
    kind: str
    task: str
    task_version: str
    task_hash: str
    model: str
    model_path: str
    model_hash: str
    config: RunConfig
    split: str
    n_examples: int
    label_names: list[str]
    label_mapping: dict[str, str]
    seed: int
    harness_version: str
    versions: dict[str, str]
    column: str = ""
    profile_hash: str | None = None
    backend: str = "hf"
    members: tuple[str, ...] = ()
    status: RunStatus = "running"
    error: str | None = None
    created_at: float = 0.0
    finished_at: float | None = None
    compute_s: float = 0.0
    # What ``run_key`` hashes (kind, task data hash, model identity, settings, harness version),
    # set when a run is planned and kept in the store, so a submission bundle can show it and a
    # validator recompute the key. None when not known (read back from the store: see
    # ``ResultStore.key_parts``).
    key_parts: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        """The leaderboard column this run fills: ``task`` or ``task@column``."""
        return f"{self.task}@{self.column}" if self.column else self.task


# --------------------------------------------------------------------------------------------------
# Per-example rows


@dataclass(frozen=True)
class PredictionRow:
    """One example through a classifier: task label, prediction, task probabilities, raw logits."""

    idx: int
    uid: str
    label: int
    pred: int
    probs: Sequence[float]
    logits: Sequence[float]


@dataclass(frozen=True)
class AttackRow:
    """One attacked example: what went in, what came out, and what it cost.

    ``original`` and ``perturbed`` hold every input column (the perturbed text equals the original
    when the attack was skipped or failed); scores are in task label order.
    """

    idx: int
    uid: str
    label: int
    status: str  # succeeded | failed | skipped
    original: Sequence[str]
    perturbed: Sequence[str]
    original_pred: int
    perturbed_pred: int
    original_scores: Sequence[float]
    perturbed_scores: Sequence[float]
    queries: int
    words_changed: int
    words_total: int


@dataclass(frozen=True)
class PromptRow:
    """One example posed to a language model: the exact prompt, the answers it could give, what
    came back, and whether it was right.

    Multiple choice: ``choices`` are the answers scored (as continuations of the prompt),
    ``scores`` their loglikelihoods, ``pred`` / ``pred_norm`` the chosen answer by raw and by
    length-normalised loglikelihood, ``output`` the chosen answer's text. Generation:
    ``output`` is the generated text, ``answer`` what was read from it, ``target`` the
    reference, ``choices`` empty and ``pred`` / ``pred_norm`` -1. NLI zero-shot: ``choices``
    are the hypotheses and ``scores`` their entailment probabilities.
    """

    idx: int
    uid: str
    label: int
    pred: int
    pred_norm: int
    scores: Sequence[float]
    prompt: str
    output: str
    answer: str
    target: str
    correct: bool
    correct_norm: bool
    shots: Sequence[str]
    choices: Sequence[str] = field(default_factory=tuple)


# -- audits (issue 15) ----------------------------------------------------------------------


@dataclass(frozen=True)
class BehaveRow:
    """One behavioural test case through a classifier.

    ``inputs`` is the case (every input column); ``variant`` the perturbed or paired case of an
    invariance or directional test (empty for minimum-functionality tests). ``expected`` is the
    task label the case expects (-1: none, as in invariance tests); probabilities are in task
    label order; ``passed`` is the test's verdict on this case.
    """

    idx: int
    uid: str
    test: str
    test_type: str  # mft | inv | dir
    inputs: Sequence[str]
    variant: Sequence[str]
    expected: int
    pred: int
    pred_variant: int
    probs: Sequence[float]
    probs_variant: Sequence[float]
    passed: bool


@dataclass(frozen=True)
class TokenAttribution:
    """Integrated gradients of one text: word pieces, their attributions (summed over the
    embedding), the convergence delta (sum of attributions minus the output difference), the
    attributed output (probability of ``target``) at the input and at the baseline."""

    tokens: Sequence[str]
    scores: Sequence[float]
    delta: float
    output: float
    baseline_output: float


@dataclass(frozen=True)
class Explanation:
    """Integrated gradients of an adversarial example's original and perturbed text for the
    original prediction, and faithfulness (AOPC) of the original's ranking against a random
    one; ``seconds`` is what it cost."""

    target: int
    original: TokenAttribution
    adversarial: TokenAttribution
    comprehensiveness: float
    sufficiency: float
    comprehensiveness_random: float
    sufficiency_random: float
    seconds: float


@dataclass(frozen=True)
class ExplainRow:
    """One successful adversarial example: the MiniLM cosine similarity of its attacked
    column(s) before and after, and its explanation when it was within the budget."""

    idx: int
    uid: str
    similarity: float
    explanation: Explanation | None = None


# -- end of audits -------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredMetric:
    run_key: str
    name: str
    value: float
    low: float | None
    high: float | None

"""Typed specs: the data that describes tasks, models and runs.

Specs are plain data (pydantic models, no behaviour beyond validation). Every spec serialises to a
canonical JSON document whose SHA-256 is its identity, so two runs described by equal specs are the
same run and can be answered from the store.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

Role = Literal["train", "dev", "test"]
ROLES: tuple[Role, ...] = ("train", "dev", "test")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def canonical_json(data: Any) -> str:
    """JSON with sorted keys and no whitespace: equal data gives equal bytes."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


S = TypeVar("S", bound="Spec")


def validation_message(exc: ValidationError) -> str:
    """The first validation error as ``field 'a.b': message (+N more)``, one line."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "(top level)"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return f"field '{where}': {message}{more}"


def parse_spec(cls: type[S], data: Any, origin: str, what: str) -> S:
    """Validate plain data (parsed YAML/JSON) as ``cls``; a one-line SpecError naming the field."""
    from bench.errors import SpecError

    if not isinstance(data, dict):
        raise SpecError(f"{origin}: {what} must be a mapping, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{origin}: {validation_message(exc)}") from None


def read_yaml(path: Path, what: str) -> Any:
    """Read a YAML file as data: ``safe_load`` only, so no tag can build an object or run code."""
    import yaml

    from bench.errors import SpecError

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read {what} file {path}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise SpecError(f"{path}:{where}: malformed YAML ({problem})") from None


class Spec(BaseModel):
    """Base of every spec: immutable, strict about unknown fields, hashable by content."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def canonical(self) -> str:
        return canonical_json(self.model_dump(mode="json"))

    def spec_hash(self) -> str:
        return sha256_text(self.canonical())


# --------------------------------------------------------------------------------------------------
# Data sources


class HubSource(Spec):
    """A dataset on the Hugging Face hub (or a local dataset folder that ``load_dataset`` reads)."""

    type: Literal["hf"] = "hf"
    path: str
    name: str | None = None
    revision: str | None = None
    # Role -> the dataset's own split name, e.g. {"train": "train", "test": "validation"}.
    splits: dict[Role, str] = Field(default_factory=dict)


class LocalSource(Spec):
    """Local files. ``path`` is one file (split by ``SplitPlan``) or ``splits`` maps roles to files.

    Relative paths are resolved against the folder of the YAML file that declared the task.
    """

    type: Literal["local"] = "local"
    path: str | None = None
    splits: dict[Role, str] = Field(default_factory=dict)
    format: Literal["jsonl", "json", "csv", "tsv", "parquet"] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> LocalSource:
        if (self.path is None) == (not self.splits):
            raise ValueError("local source needs exactly one of 'path' or 'splits'")
        return self


class BigBenchSource(Spec):
    """A BIG-bench ``task.json`` from the pinned ``bigbench`` asset.

    Rows have ``input`` (the raw text), ``label`` (the choice with the highest target score) and,
    when ``input_pattern`` is given, one column per named group of that regular expression (data,
    not code: only Python's ``re`` syntax is interpreted).
    """

    type: Literal["bigbench"] = "bigbench"
    # e.g. "epistemic_reasoning" or "multiemo/hotels_text_en"; a list concatenates tasks (a
    # chosen subset of a task's subtasks, such as a few of arithmetic's).
    task: str | list[str] = Field(min_length=1)
    input_pattern: str | None = None

    @field_validator("input_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                compiled = re.compile(value, re.DOTALL)
            except re.error as exc:
                raise ValueError(f"input_pattern is not a valid regular expression: {exc}") from exc
            if not compiled.groupindex:
                raise ValueError("input_pattern must name its groups, e.g. (?P<premise>...)")
        return value


class VaderSource(Spec):
    """One domain of the VADER human-rated sentiment snippets (pinned ``vaderSentiment`` asset).

    Rows have ``id``, ``text`` and ``rating`` (mean human rating, -4..+4).
    """

    type: Literal["vader"] = "vader"
    domain: Literal["movies", "amazon", "nyt", "tweets"]


Source = Annotated[
    HubSource | LocalSource | BigBenchSource | VaderSource, Field(discriminator="type")
]


# --------------------------------------------------------------------------------------------------
# Labels and splits


class ThresholdLabels(Spec):
    """Derive a binary label from a numeric column: ``below`` if value < threshold, ``above`` if >.

    Values equal to the threshold are dropped (they carry no polarity).
    """

    column: str
    threshold: float = 0.0
    below: str
    above: str


_DEFAULT_FRACTIONS: dict[Role, float] = {"train": 0.8, "dev": 0.1, "test": 0.1}


class SplitPlan(Spec):
    """How a single pool of examples is divided into train/dev/test.

    Assignment hashes each example's content with ``seed``, so it does not depend on row order and
    an example never moves between splits when others are added. ``limits`` caps a role after the
    split with a seeded, order-independent subsample. Without ``group_by`` the hashed key is the
    example's inputs, so duplicated texts never straddle splits either.
    """

    fractions: dict[Role, float] = Field(default_factory=lambda: dict(_DEFAULT_FRACTIONS))
    seed: int = 0
    limits: dict[Role, int] = Field(default_factory=dict)
    # Rows sharing this column's value stay in one split (e.g. a claim that comes with several
    # contrastive evidence passages). Dotted paths reach into nested fields: "comment.example_id".
    group_by: str | None = None

    @field_validator("fractions")
    @classmethod
    def _sum_to_one(cls, value: dict[Role, float]) -> dict[Role, float]:
        if any(v < 0 for v in value.values()) or abs(sum(value.values()) - 1.0) > 1e-6:
            raise ValueError("split fractions must be non-negative and sum to 1")
        return value


# --------------------------------------------------------------------------------------------------
# Tasks


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def template_fields(template: str) -> list[str]:
    """The field names a prompt template uses, in order.

    The template language is deliberately tiny: ``{field}`` inserts a field, ``{{`` and ``}}`` are
    literal braces, and nothing else is special. No attribute access, indexing, conversions or
    format specs (``str.format`` allows all of them): a template is data and never evaluates
    anything. Anything else inside braces, or a lone brace, is a ``ValueError``.
    """
    fields: list[str] = []
    for match in _PLACEHOLDER.finditer(template):
        token = match.group(0)
        if token in ("{{", "}}"):
            continue
        name = match.group(1)
        if name is None or not _FIELD.match(name):
            raise ValueError(
                f"template {template!r}: {token!r} is not a field; write {{name}} for a field "
                "and {{ or }} for a literal brace"
            )
        fields.append(name)
    return fields


def render_template(template: str, values: dict[str, str]) -> str:
    """Fill ``{field}`` placeholders (see :func:`template_fields`); a missing field is a KeyError."""
    template_fields(template)  # validates

    def fill(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        return values[match.group(1)]

    return _PLACEHOLDER.sub(fill, template)


class FewShotSpec(Spec):
    """``k`` solved examples before the question, drawn with ``seed`` from ``split``."""

    k: int = Field(default=0, ge=0)
    split: Literal["train", "dev"] = "train"
    seed: int = 1234


class PromptSpec(Spec):
    """How a causal LM is asked the task: templates (alternatives measure prompt sensitivity),
    verbalised choices, delimiters and the few-shot block; for generation tasks, how the answer
    is read from the generated text; for zero-shot classification with an NLI model, the
    hypothesis each label becomes."""

    # Each template renders one example's question from its input fields.
    templates: list[str] = Field(min_length=1)
    # One answer text per task label, in label order (default: the label names).
    choices: list[str] | None = None
    instruction: str = ""
    # Between the question and its answer, and between solved examples.
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    fewshot: FewShotSpec = Field(default_factory=FewShotSpec)
    # Generation tasks: the answer is the first match of this regular expression in the
    # generated text (default: the whole text, stripped); it is compared with the target read
    # the same way. Only Python's ``re`` syntax is interpreted.
    answer_pattern: str | None = None
    # Which match counts: the first (BIG-bench's rule) or the last (a chat model often restates
    # the question, "63 + 23 = 86", before its answer).
    answer_match: Literal["first", "last"] = "first"
    max_new_tokens: int = Field(default=32, ge=1, le=1024)
    # Generation stops before the first of these strings.
    stop: list[str] = Field(default_factory=lambda: ["\n\n"])
    # Zero-shot classification with an NLI model: the hypothesis for each label, ``{choice}``
    # being the label's verbalised answer; the example's text is the premise.
    hypothesis: str | None = None

    @field_validator("templates")
    @classmethod
    def _parse(cls, value: list[str]) -> list[str]:
        for template in value:
            template_fields(template)
        return value

    @field_validator("answer_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(
                    f"answer_pattern is not a valid regular expression: {exc}"
                ) from exc
        return value

    @field_validator("hypothesis")
    @classmethod
    def _hypothesis(cls, value: str | None) -> str | None:
        if value is not None and template_fields(value) != ["choice"]:
            raise ValueError("hypothesis must use the field {choice} exactly once and no other")
        return value


TaskKind = Literal["classification", "multiple_choice", "generation"]


class TaskSpec(Spec):
    """A task: where its data comes from and how rows become labelled examples.

    ``kind`` says what an answer is. ``classification`` (the default): one of the task's
    ``labels``; every model type can answer it. ``multiple_choice``: one of the example's own
    options, read from ``choices_column`` (a list of strings, or a mapping option -> score such as
    BIG-bench's ``target_scores``), the correct one being ``label_column``'s value.
    ``generation``: free text, compared with ``label_column``'s value by exact match. The last
    two are posed to causal LMs only.
    """

    name: str
    version: str = "1"
    description: str = ""
    domain: str = "general"
    source: Source
    kind: TaskKind = "classification"
    # One column (single text) or two (a pair such as premise/hypothesis), in model input order.
    inputs: list[str] = Field(min_length=1, max_length=2)
    label_column: str = "label"
    # Multiple-choice tasks: the column holding each example's options.
    choices_column: str | None = None
    # The task's classes; the index of a name is its class id everywhere downstream.
    labels: list[str] = Field(default_factory=list)
    # Dataset label value (as a string) -> task label name; null drops the row. Empty: identity.
    label_map: dict[str, str | None] = Field(default_factory=dict)
    label_threshold: ThresholdLabels | None = None
    # Label names a model may use that this task's labels absorb (e.g. a 3-way NLI model on a
    # 2-way task: neutral and contradiction both mean non-entailment). Declared, never guessed.
    label_aliases: dict[str, str] = Field(default_factory=dict)
    splits: SplitPlan = Field(default_factory=SplitPlan)
    metrics: list[str] = Field(default_factory=lambda: ["accuracy", "macro_f1", "ece"])
    tags: list[str] = Field(default_factory=list)
    # How the task is posed to a causal LM (zero-/few-shot prompting); not part of its data.
    prompt: PromptSpec | None = None

    def canonical(self) -> str:
        """The task's data identity. The prompt format is left out: it changes how a causal LM is
        asked, not the examples, so adding or editing it keeps every stored classifier result;
        prompt runs key on the prompt spec themselves."""
        data = self.model_dump(mode="json")
        data.pop("prompt")
        # Fields added after results were stored enter the identity only when they say something,
        # so a classification task keeps the hash it always had.
        for added, default in (("kind", "classification"), ("choices_column", None)):
            if data[added] == default:
                data.pop(added)
        return canonical_json(data)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(f"task name {value!r} must be letters, digits, '_', '.', '-'")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if info.data.get("kind", "classification") == "classification" and len(value) < 2:
            raise ValueError("a classification task needs at least 2 labels")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TaskSpec:
        self._kind_fields()
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        known = set(self.labels)
        for src, dst in self.label_map.items():
            if dst is not None and dst not in known:
                raise ValueError(f"label_map sends {src!r} to {dst!r}, which is not in labels")
        for src, dst in self.label_aliases.items():
            if dst not in known:
                raise ValueError(f"label_aliases sends {src!r} to {dst!r}, which is not in labels")
        if self.label_threshold is not None:
            lt = self.label_threshold
            if {lt.below, lt.above} - known:
                raise ValueError("label_threshold names labels that are not in labels")
        if self.prompt is not None:
            for i, template in enumerate(self.prompt.templates, 1):
                missing = [f for f in template_fields(template) if f not in self.inputs]
                if missing:
                    raise ValueError(
                        f"prompt template {i} references {{{missing[0]}}}, which is not an input "
                        f"of the task (inputs: {', '.join(self.inputs)})"
                    )
            choices = self.prompt.choices
            if choices is not None and self.kind != "classification":
                raise ValueError(
                    f"prompt choices verbalise labels; a {self.kind} task has none (its answers "
                    "come from the data)"
                )
            if choices is not None and len(choices) != len(self.labels):
                raise ValueError(
                    f"prompt choices give {len(choices)} answers for {len(self.labels)} labels"
                )
            if self.prompt.hypothesis is not None and self.kind != "classification":
                raise ValueError("an NLI hypothesis needs a classification task")
        return self

    def _kind_fields(self) -> None:
        if self.kind == "classification":
            if self.choices_column is not None:
                raise ValueError("choices_column belongs to multiple_choice tasks")
            return
        extra = [
            name
            for name, value in (
                ("labels", self.labels),
                ("label_map", self.label_map),
                ("label_threshold", self.label_threshold),
                ("label_aliases", self.label_aliases),
            )
            if value
        ]
        if extra:
            raise ValueError(
                f"a {self.kind} task takes its answers from the data; remove {extra[0]}"
            )
        if (self.kind == "multiple_choice") != (self.choices_column is not None):
            raise ValueError("a multiple_choice task needs choices_column, and only it does")
        if self.prompt is None:
            raise ValueError(f"a {self.kind} task is posed as a prompt; add a prompt section")

    @property
    def is_pair(self) -> bool:
        return len(self.inputs) == 2

    def require_labels(self, what: str) -> None:
        """Refuse ``what`` (a classifier's job) on a task whose answers are not fixed labels."""
        if self.kind != "classification":
            from bench.errors import SpecError

            raise SpecError(
                f"task {self.name!r} is a {self.kind.replace('_', '-')} task: {what} needs a "
                "classification task; pose it to a causal LM instead (e.g. --model smollm2)"
            )


# --------------------------------------------------------------------------------------------------
# Models and runs


class ModelSpec(Spec):
    """A model by hub id or local folder, and the backend that runs it (``hf``: transformers
    with PyTorch; ``onnx``: an exported classifier on ONNX Runtime; see ``bench.backends``)."""

    name: str
    path: str
    backend: str = "hf"
    revision: str | None = None
    # Explicit model label -> task label override; wins over name matching and task aliases.
    label_map: dict[str, str] = Field(default_factory=dict)
    trust_remote_code: bool = False
    use_safetensors: bool = True

    def load_options(self) -> dict[str, Any]:
        """What a model adapter's ``load`` takes from the spec besides the path."""
        return {
            "revision": self.revision,
            "trust_remote_code": self.trust_remote_code,
            "use_safetensors": self.use_safetensors,
        }


class EvalConfig(Spec):
    """How a task is evaluated. Only fields that change predictions enter the run identity;
    the bootstrap settings (``n_bootstrap``, ``confidence`` and ``seed`` as the bootstrap seed)
    only change metrics, which are recomputed from stored predictions."""

    split: Role = "test"
    max_length: int = Field(default=256, gt=0)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    limit: int | None = Field(default=None, gt=0)
    n_bootstrap: int = Field(default=1000, ge=0)
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0)
    # Seeds the --limit sample (part of the identity only when there is one) and the bootstrap.
    seed: int = 0
    # Performance knobs: recorded with the run, excluded from its identity.
    batch_size: int = Field(default=32, gt=0)
    device: str = "auto"

    def identity(self) -> dict[str, Any]:
        ident = self.model_dump(
            mode="json", exclude={"batch_size", "device", "n_bootstrap", "confidence", "seed"}
        )
        if self.limit is not None:
            ident["sample_seed"] = self.seed
        return ident

    def metric_settings(self) -> Any:
        from bench.records import MetricSettings

        return MetricSettings(
            n_bootstrap=self.n_bootstrap, confidence=self.confidence, seed=self.seed
        )


class PromptConfig(Spec):
    """How tasks are posed as prompts. Only fields that can change the answers enter the run
    identity (the bootstrap settings change metrics only, recomputed from stored answers)."""

    split: Role = "test"
    limit: int | None = Field(default=None, gt=0)
    # Sampling of evaluated examples (--limit) and bootstrap CIs; few-shot draws have their own
    # seed in the task's prompt spec.
    seed: int = 0
    n_bootstrap: int = Field(default=1000, ge=0)
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0)
    # Tokens a model sees (left-truncated); default: the model's own limit.
    max_length: int | None = Field(default=None, gt=0)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    # Wrap prompts in the model's chat template when it has one.
    chat_template: bool = True
    # Performance knobs: recorded with the run, excluded from its identity.
    batch_size: int = Field(default=8, gt=0)
    device: str = "auto"

    def identity(self) -> dict[str, Any]:
        ident = self.model_dump(
            mode="json", exclude={"batch_size", "device", "n_bootstrap", "confidence", "seed"}
        )
        if self.limit is not None:
            ident["sample_seed"] = self.seed
        return ident

    def metric_settings(self) -> Any:
        from bench.records import MetricSettings

        return MetricSettings(
            n_bootstrap=self.n_bootstrap, confidence=self.confidence, seed=self.seed
        )

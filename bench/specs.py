"""Typed specs: the data that describes tasks, models and runs.

Specs are plain data (pydantic models, no behaviour beyond validation). Every spec serialises to a
canonical JSON document whose SHA-256 is its identity, so two runs described by equal specs are the
same run and can be answered from the store.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
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

# Names become file names, table cells and store keys. fullmatch, never ``$``: ``$`` also
# matches before a final newline, so "name\n" would pass.
NAME_MAX = 100
_NAME_RE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.\-]{{0,{NAME_MAX - 1}}}")

# Seeds reach numpy, whose generators take 0 <= seed < 2**32.
SEED_MAX = 2**32 - 1
# The metrics a classification task may list (bench.metrics computes them).
TASK_METRICS: tuple[str, ...] = ("accuracy", "macro_f1", "ece", "brier", "per_class")
# Bootstrap resamples: 0 (no intervals), or enough for a percentile interval's ends to be two
# resamples apart at 95 % and few enough to finish (1 or 2 gave intervals that missed their own
# point estimate; 10^9 ran for minutes without a word). The gate's own range.
BOOTSTRAP_MIN, BOOTSTRAP_MAX = 100, 100_000


def check_n_bootstrap(value: int) -> int:
    if value != 0 and not BOOTSTRAP_MIN <= value <= BOOTSTRAP_MAX:
        raise ValueError(
            f"must be 0 (no intervals) or between {BOOTSTRAP_MIN} and {BOOTSTRAP_MAX:,}"
        )
    return value


# The device syntax every command accepts; checked before anything is loaded (availability is
# checked later, by the model adapters).
_DEVICE_RE = re.compile(r"auto|cpu|mps|cuda(:[0-9]{1,3})?")
DEVICES = "auto, cpu, cuda, cuda:N or mps"

# Spec files are small: a task or suite is a page of YAML. These bounds refuse, in one line and
# before anything is built, files that are not specs at all: a data file or a device named by
# mistake, YAML nested deeper than any spec (which would exhaust the parser's recursion), and
# alias bombs (a few hundred bytes whose aliases expand to millions of nodes).
MAX_SPEC_BYTES = 4 * 1024 * 1024
MAX_SPEC_DEPTH = 64
MAX_SPEC_NODES = 50_000


def check_name(value: str, what: str) -> str:
    """``value`` if it is a valid name (see ``_NAME_RE``), else a one-line ValueError."""
    if not _NAME_RE.fullmatch(value):
        from bench.errors import shown

        raise ValueError(
            f"{what} name {shown(value)} must be 1 to {NAME_MAX} letters, digits, '_', '.', '-', "
            "starting with a letter or digit"
        )
    return value


def check_device(value: str) -> str:
    """``value`` if it is device syntax the harness understands, else a one-line ValueError."""
    if not _DEVICE_RE.fullmatch(value):
        from bench.errors import shown

        raise ValueError(f"device {shown(value)} is not one of {DEVICES}")
    return value


def canonical_json(data: Any) -> str:
    """JSON with sorted keys and no whitespace: equal data gives equal bytes."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


S = TypeVar("S", bound="Spec")


def _loc_part(part: Any) -> str:
    # A location holds the user's own keys (a label_map entry, an unknown field): capped.
    text = " ".join(str(part).split())
    return text if len(text) <= 30 else text[:27] + "..."


def validation_message(exc: ValidationError) -> str:
    """The first validation error as ``field 'a.b': message (+N more)``, one line and short
    whatever the offending value (pydantic's messages never echo the input; ours use
    :func:`bench.errors.shown`)."""
    first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
    where = ".".join(_loc_part(p) for p in first.get("loc", ())[:6]) or "(top level)"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    message = " ".join(str(first.get("msg", "invalid")).removeprefix("Value error, ").split())
    if len(message) > 160:
        message = message[:157] + "..."
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
    """Read a YAML file as data: ``safe_load`` only, so no tag can build an object or run code.

    Refused in one line naming the file: anything but a regular file, more than
    ``MAX_SPEC_BYTES``, text that is not UTF-8, malformed YAML, nesting deeper than
    ``MAX_SPEC_DEPTH``, more than ``MAX_SPEC_NODES`` nodes once aliases are expanded, and aliases
    that refer to themselves (which would build a cyclic value).
    """
    import yaml

    from bench.errors import SpecError

    if path.is_dir():
        raise SpecError(f"{what} file {path} is a directory")
    try:
        if path.exists() and not path.is_file():
            # A FIFO or a device would block or never end.
            raise SpecError(f"{what} file {path} is not a regular file")
        with path.open("rb") as fh:
            raw = fh.read(MAX_SPEC_BYTES + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = getattr(exc, "strerror", None) or exc
        raise SpecError(f"cannot read {what} file {path}: {reason}") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(
            f"{what} file {path} is larger than {MAX_SPEC_BYTES // (1024 * 1024)} MiB; a spec "
            "is a page of YAML, not data"
        )
    try:
        # utf-8-sig: a byte-order mark some editors write is not part of the text.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"{what} file {path} is not UTF-8 text (invalid byte at offset {exc.start})"
        ) from None
    try:
        _check_yaml_shape(text, path, what)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or "malformed"
        problem = " ".join(str(problem).split())[:100]
        raise SpecError(f"{path}:{where}: malformed YAML ({problem})") from None
    except RecursionError:
        # The shape check bounds nesting first; this is the last line of defence.
        raise SpecError(f"{what} file {path} is nested too deeply") from None
    except SpecError:
        raise  # the shape check's own, already one line naming the file
    except Exception as exc:
        # PyYAML's constructors raise plain ValueError/AttributeError/... for scalars they cannot
        # convert ("2001-13-45", "!!timestamp x", a 5000-digit integer). The text is all this
        # call reads, so whatever it raises is a fault of the text.
        reason = " ".join(str(exc).split())[:100]
        raise SpecError(
            f"{path}: malformed YAML (a value cannot be read: {type(exc).__name__}: {reason})"
        ) from None
    _check_yaml_values(data, path, what)
    return data


# Integers beyond SQLite's and JSON consumers' 64-bit range are no count, seed or size.
_INT_LIMIT = 2**63


def _check_yaml_values(data: Any, path: Path, what: str) -> None:
    """Refuse integers outside 64 bits (they cannot be stored, and Python will not print one
    beyond 4300 digits). Iterative, and each shared (aliased) node is visited once."""
    from bench.errors import SpecError

    seen: set[int] = set()
    todo = [data]
    while todo:
        value = todo.pop()
        if isinstance(value, dict | list | tuple | set):
            if id(value) in seen:
                continue
            seen.add(id(value))
            if isinstance(value, dict):
                todo.extend(value.keys())
                todo.extend(value.values())
            else:
                todo.extend(value)
        elif (
            isinstance(value, int)
            and not isinstance(value, bool)
            and not -_INT_LIMIT <= value < _INT_LIMIT
        ):
            raise SpecError(
                f"{what} file {path} holds an integer of {value.bit_length()} bits; numbers "
                "in a spec fit in 64 bits"
            )


def _check_yaml_shape(text: str, path: Path, what: str) -> None:
    """Walk the YAML event stream (the parser is iterative, so this cannot recurse) and refuse
    deep nesting, alias bombs and self-referencing aliases before anything is constructed."""
    import yaml

    from bench.errors import SpecError

    # Open collections: [anchor, expanded nodes inside so far (the collection included)].
    stack: list[list[Any]] = []
    sizes: dict[str, int] = {}  # expanded size of each finished anchored node
    open_anchors: set[str] = set()
    nodes = 0

    def add(size: int, *, to_parent: bool = True) -> None:
        nonlocal nodes
        nodes += size
        if nodes > MAX_SPEC_NODES:
            raise SpecError(
                f"{what} file {path} expands to more than {MAX_SPEC_NODES} YAML nodes (aliases "
                "counted as copies); a spec is far smaller, is this an alias bomb?"
            )
        if stack and to_parent:
            stack[-1][1] += size

    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(stack) >= MAX_SPEC_DEPTH:
                raise SpecError(
                    f"{what} file {path} nests more than {MAX_SPEC_DEPTH} levels deep; a spec "
                    "is far shallower"
                )
            # Counted now; its parent gets its whole size when it ends.
            add(1, to_parent=False)
            stack.append([event.anchor, 1])
            if event.anchor:
                open_anchors.add(event.anchor)
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, size = stack.pop()
            if anchor:
                sizes[anchor] = size
                open_anchors.discard(anchor)
            # The collection itself was counted at its start; its contents as they came.
            if stack:
                stack[-1][1] += size
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor:
                sizes[event.anchor] = 1
            add(1)
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor in open_anchors:
                raise SpecError(
                    f"{what} file {path}: alias *{event.anchor[:40]} refers to a node that "
                    "contains it (a cyclic value)"
                )
            # An undefined alias is left to the loader, which reports it with its line.
            add(sizes.get(event.anchor or "", 1))


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


# "<digits>_digit_<operation>", BIG-bench's names for the subtasks of its arithmetic task.
ARITHMETIC_SUBTASK = re.compile(r"([1-5])_digit_(addition|subtraction|multiplication|division)")


class ArithmeticSource(Spec):
    """Integer arithmetic questions generated from a seed, worded as BIG-bench's ``arithmetic``
    task words them ("What is 27 plus 85?", target "112"); needs no asset.

    Each subtask, named as BIG-bench names them (``2_digit_multiplication``), draws
    ``per_subtask`` distinct operand pairs below 10**digits (every pair when a subtask has
    fewer: 1-digit addition has 100). Division questions divide a product by one of its
    factors, so every answer is an integer. Rows have ``id``, ``input``, ``target`` and
    ``subtask``; the same spec gives the same rows on every machine and Python version.
    """

    type: Literal["arithmetic"] = "arithmetic"
    subtasks: list[str] = Field(min_length=1, max_length=20)
    per_subtask: int = Field(default=100, ge=1, le=10_000)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)

    @field_validator("subtasks")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        for name in value:
            if not ARITHMETIC_SUBTASK.fullmatch(name):
                raise ValueError(
                    f"unknown arithmetic subtask {name[:40]!r}: expected <1-5>_digit_<addition, "
                    "subtraction, multiplication or division>, e.g. 2_digit_addition"
                )
        if len(set(value)) != len(value):
            raise ValueError("arithmetic subtasks are listed more than once")
        return value


Source = Annotated[
    HubSource | LocalSource | BigBenchSource | VaderSource | ArithmeticSource,
    Field(discriminator="type"),
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

    @field_validator("threshold")
    @classmethod
    def _finite(cls, value: float) -> float:
        # An infinite threshold puts every row on one side, NaN drops every row: a one-class
        # (or empty) task that would still report an accuracy.
        if not math.isfinite(value):
            raise ValueError(f"label_threshold threshold must be a finite number, got {value}")
        return value


_DEFAULT_FRACTIONS: dict[Role, float] = {"train": 0.8, "dev": 0.1, "test": 0.1}


def all_test_splits() -> dict[str, Any]:
    """The splits of a task that is one local file without a splits section (see TaskSpec)."""
    return {"fractions": {"test": 1.0}}


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
        # NaN compares false with everything, so it must be refused explicitly: a NaN fraction
        # used to pass the sum check and send every example to test.
        if not all(math.isfinite(v) and v >= 0 for v in value.values()):
            raise ValueError("split fractions must be finite, non-negative numbers that sum to 1")
        if abs(sum(value.values()) - 1.0) > 1e-6:
            raise ValueError("split fractions must be non-negative and sum to 1")
        return value

    @field_validator("limits")
    @classmethod
    def _positive(cls, value: dict[Role, int]) -> dict[Role, int]:
        for role, n in value.items():
            if n < 1:
                # A negative cap used to drop the last examples, zero to empty the split.
                raise ValueError(
                    f"split limit for {role} is {n}; a limit caps a split at 1 or more examples "
                    "(to leave a split out, give it fraction 0)"
                )
        return value


# --------------------------------------------------------------------------------------------------
# Tasks


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # fullmatch: "{name\n}" is not a field


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
        if name is None or not _FIELD.fullmatch(name):
            from bench.errors import shown

            raise ValueError(
                f"template {shown(template, 40)}: {shown(token, 30)} is not a field; write "
                "{name} for a field and {{ or }} for a literal brace"
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

    A task whose source is one local file and that has no ``splits`` section is an evaluation
    set: every row is a test example (:func:`all_test_splits`). Everything else without ``splits`` is
    divided 80/10/10 by hash.
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
    # Integer dataset labels index ``labels`` by position. Off unless declared: a label list
    # written in another order than the data's ids would silently invert every result.
    labels_are_indices: bool = False
    label_threshold: ThresholdLabels | None = None
    # Label names a model may use that this task's labels absorb (e.g. a 3-way NLI model on a
    # 2-way task: neutral and contradiction both mean non-entailment). Declared, never guessed.
    label_aliases: dict[str, str] = Field(default_factory=dict)
    splits: SplitPlan = Field(default_factory=SplitPlan)
    # Examples that share this field's value (a passage, a claim's contrastive revisions) are
    # resampled together by paired comparisons and gates; default: the split's group_by.
    # Dotted paths reach into nested fields. Not part of the data identity.
    cluster_by: str | None = None
    metrics: list[str] = Field(default_factory=lambda: ["accuracy", "macro_f1", "ece"])
    tags: list[str] = Field(default_factory=list)

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: list[str]) -> list[str]:
        # Checked when the task is read: an unknown name failed only after every prediction
        # was computed (a KeyError traceback, and the run left 'running'), and an empty list ran
        # to a table with nothing in it.
        unknown = [m for m in value if m not in TASK_METRICS]
        if unknown or not value or len(set(value)) != len(value):
            raise ValueError(
                f"must list distinct metrics of {', '.join(TASK_METRICS)}"
                + (f" (unknown: {', '.join(unknown)})" if unknown else "")
            )
        return value

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
        # How examples cluster changes comparisons, not the examples.
        data.pop("cluster_by")
        for added, default in (
            ("kind", "classification"),
            ("choices_column", None),
            ("labels_are_indices", False),
        ):
            if data[added] == default:
                data.pop(added)
        return canonical_json(data)

    @model_validator(mode="before")
    @classmethod
    def _default_splits(cls, data: Any) -> Any:
        # One local file without a splits section is an evaluation set: all of it is test.
        # Hashing it 80/10/10 quietly turned an 81-row file into a 7-example test split.
        if isinstance(data, dict) and "splits" not in data:
            source = data.get("source")
            path = source.get("path") if isinstance(source, dict) else None
            if isinstance(source, dict) and source.get("type") == "local" and path is not None:
                return {**data, "splits": all_test_splits()}
            if isinstance(source, LocalSource) and source.path is not None:
                return {**data, "splits": all_test_splits()}
        return data

    @field_validator("label_map", mode="before")
    @classmethod
    def _label_map_keys(cls, value: Any) -> Any:
        # Keys are compared with the data's labels as strings; YAML reads ``{0: negative}`` with
        # int keys, which mean exactly "0". A boolean key is refused instead: unquoted yes, no,
        # on, off, true and false are all YAML booleans, and guessing which was meant would map
        # labels silently wrong.
        if not isinstance(value, dict):
            return value
        for key in value:
            if isinstance(key, bool):
                raise ValueError(
                    f"label_map key {key} is a YAML boolean (unquoted yes/no/on/off/true/false); "
                    'quote it, e.g. "yes"'
                )
        return {str(k) if isinstance(k, int) else k: v for k, v in value.items()}

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value, "task")

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if info.data.get("kind", "classification") == "classification" and len(value) < 2:
            raise ValueError("a classification task needs at least 2 labels")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TaskSpec:
        from bench.errors import shown

        self._kind_fields()
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        known = set(self.labels)
        for src, dst in self.label_map.items():
            if dst is not None and dst not in known:
                raise ValueError(
                    f"label_map sends {shown(src, 30)} to {shown(dst, 30)}, which is not in labels"
                )
        for src, dst in self.label_aliases.items():
            if dst not in known:
                raise ValueError(
                    f"label_aliases sends {shown(src, 30)} to {shown(dst, 30)}, which is not in "
                    "labels"
                )
        if self.labels_are_indices and (self.label_map or self.label_threshold is not None):
            raise ValueError(
                "labels_are_indices reads integer labels by position in labels; it cannot be "
                "combined with label_map or label_threshold"
            )
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
                ("labels_are_indices", self.labels_are_indices),
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


class RunSettings(Spec):
    """What evaluation and prompting settings share: the split, a seeded sample, the bootstrap
    and where the model runs. Only fields that change predictions enter a run's identity; the
    bootstrap settings (``n_bootstrap``, ``confidence``, and ``seed`` as the bootstrap seed)
    change metrics only, which are recomputed from stored rows."""

    split: Role = "test"
    limit: int | None = Field(default=None, gt=0)
    # Seeds the --limit sample (part of the identity only when there is one) and the bootstrap.
    seed: int = Field(default=0, ge=0, le=SEED_MAX)
    n_bootstrap: Annotated[int, AfterValidator(check_n_bootstrap)] = 1000
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    # Performance knob: recorded with the run, excluded from its identity.
    device: str = "auto"

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        # Syntax only, so a typo is refused before a model is loaded; availability is the
        # adapter's to check.
        return check_device(value)

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


class EvalConfig(RunSettings):
    """How a task is evaluated (see ``RunSettings``)."""

    max_length: int = Field(default=256, gt=0)
    # Performance knob: recorded with the run, excluded from its identity.
    batch_size: int = Field(default=32, gt=0)


class PromptConfig(RunSettings):
    """How tasks are posed as prompts (see ``RunSettings``); few-shot draws have their own seed
    in the task's prompt spec."""

    # Tokens a model sees (left-truncated); default: the model's own limit.
    max_length: int | None = Field(default=None, gt=0)
    # Wrap prompts in the model's chat template when it has one.
    chat_template: bool = True
    # Performance knob: recorded with the run, excluded from its identity.
    batch_size: int = Field(default=8, gt=0)

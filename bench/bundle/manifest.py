"""The bundle manifest: typed, versioned, published as a JSON Schema.

``BundleManifest`` is what ``manifest.json`` holds; ``docs/bundle-manifest.schema.json`` is
generated from it (``manifest_json_schema``) and a test keeps the two equal. Version 1 is the
only one this harness writes and reads; a bundle of another version is refused by name before
anything else in it is looked at.

Free-form values (a task spec, a run's typed config, its key parts, an attack spec, a model
card) are JSON objects here and are checked against their own types by the validator.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FORMAT = "nlp-bench-bundle"
SCHEMA_VERSION = 1
SCHEMA_ID = "urn:nlp-bench:bundle-manifest:v1"

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
RunKey = Annotated[str, Field(pattern=r"^[0-9a-f]{24}$")]
# Member paths: what the reader accepts (see bench.bundle.zipio.MEMBER_RE).
MemberPath = Annotated[
    str,
    Field(
        pattern=r"^(rows/[0-9a-f]{24}\.(jsonl|leaves)|model/README\.md"
        r"|interop/(model-index\.yaml|lm-eval-results\.json))$"
    ),
]
RunKind = Literal["eval", "prompt", "prompt_set", "attack", "suite"]
RowTableName = Literal["predictions", "prompt_examples", "attack_examples"]


class _Strict(BaseModel):
    # Unknown fields are refused (a typo is not silently dropped) and types are not coerced
    # ("3" is not an integer); floats are written one way (see bench.bundle.canonical).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Harness(_Strict):
    """What wrote the bundle."""

    name: Literal["nlp-bench"]
    version: str = Field(pattern=r"^[0-9]+\.[0-9]+\.[0-9]+([.\-+a-z0-9]*)$")


class Environment(_Strict):
    """Where the runs were computed: Python, platform, the devices and dtypes the runs used,
    and library versions when the bundle was written (each run also keeps its own)."""

    python: str
    platform: str
    devices: list[str]
    dtypes: list[str]
    versions: dict[str, str]


class ModelInfo(_Strict):
    """The model every run of the bundle comes from.

    ``kind``/``hash``/``revision``/``backend`` are its identity as run keys hash it (a local
    folder's content hash; a hub repository's resolved commit). ``reference`` says what to
    load for a rescore: a hub id, a built-in default model's name, or a local folder's name
    (its path is not recorded; a validator passes ``--model PATH`` and the hash must match).
    ``card`` is the folder's ``bench_model_card.json``; ``card_file`` its README, if any."""

    name: str = Field(min_length=1, max_length=200)
    backend: str
    kind: Literal["local", "hub", "served"]
    reference: str
    hash: str = Field(min_length=1)
    revision: str | None
    card: dict[str, Any] | None
    card_file: MemberPath | None

    def identity_key(self) -> dict[str, Any]:
        """What run keys hash for this model (``bench.backends.ModelIdentity.key``)."""
        if self.kind == "local":
            return {"backend": self.backend, "kind": "local", "hash": self.hash}
        return {
            "backend": self.backend,
            "kind": self.kind,
            "id": self.reference,
            "hash": self.hash,
            "revision": self.revision,
        }


class TaskInfo(_Strict):
    """A task as the submitter had it: its spec (data), version, data hash and split sizes."""

    name: str
    version: str
    data_hash: Sha256
    spec: dict[str, Any]
    splits: dict[str, Annotated[int, Field(ge=0)]]


class MetricEntry(_Strict):
    """A metric's value and its bootstrap interval (null when it has none)."""

    value: float
    low: float | None
    high: float | None


class MetricSettingsInfo(_Strict):
    """The metric settings the run's metrics were computed under (``MetricSettings``)."""

    n_bootstrap: int = Field(ge=0)
    confidence: float = Field(gt=0.0, lt=1.0)
    seed: int

    def to_settings(self) -> Any:
        from bench.records import MetricSettings

        return MetricSettings(
            n_bootstrap=self.n_bootstrap, confidence=self.confidence, seed=self.seed
        )


class RowsInfo(_Strict):
    """Where a run's per-example rows are, how many, and their Merkle root."""

    file: MemberPath
    leaves: MemberPath
    table: RowTableName
    count: int = Field(ge=0)
    merkle_root: Sha256


class RunInfo(_Strict):
    """One stored run: its record, settings, key parts, metrics and rows.

    ``partial``: an evaluation or prompted run on a seeded sample (``limit``) smaller than its
    split; it is validated against that sample and never ranked. ``attack_spec``: an attack
    run's attack as data, so a validator can rebuild it for ``--rescore``."""

    key: RunKey
    kind: RunKind
    task: str
    task_version: str
    task_hash: Sha256
    column: str
    split: Literal["train", "dev", "test"]
    n_examples: int = Field(ge=0)
    partial: bool
    profile_hash: str | None
    backend: str
    label_names: list[str]
    label_mapping: dict[str, str]
    seed: int = Field(ge=0)
    harness_version: str
    versions: dict[str, str]
    config: dict[str, Any]
    key_parts: dict[str, Any]
    members: list[RunKey]
    attack_spec: dict[str, Any] | None
    metric_settings: MetricSettingsInfo
    metrics: dict[str, MetricEntry]
    rows: RowsInfo | None
    created_at: float
    finished_at: float
    compute_s: float = Field(ge=0)

    @property
    def label(self) -> str:
        """The leaderboard column: ``task`` or ``task@column``."""
        return f"{self.task}@{self.column}" if self.column else self.task


class FileEntry(_Strict):
    """A member of the zip besides the manifest, with its SHA-256 and size."""

    path: MemberPath
    sha256: Sha256
    bytes: int = Field(ge=0)


class Merkle(_Strict):
    """The root over every run's rows (see ``bench.bundle.merkle``) and the leaf count."""

    algorithm: Literal["sha256-rfc6962"]
    root: Sha256
    leaves: int = Field(ge=0)


class BundleManifest(_Strict):
    """``manifest.json`` of a submission bundle (schema version 1)."""

    format: Literal["nlp-bench-bundle"]
    schema_version: Literal[1]
    created: str
    harness: Harness
    environment: Environment
    model: ModelInfo
    tasks: list[TaskInfo]
    runs: list[RunInfo]
    files: list[FileEntry]
    merkle: Merkle

    def run(self, key: str) -> RunInfo | None:
        return next((r for r in self.runs if r.key == key), None)

    def task(self, name: str) -> TaskInfo | None:
        return next((t for t in self.tasks if t.name == name), None)


def manifest_json_schema() -> dict[str, Any]:
    """The published JSON Schema of the manifest (``docs/bundle-manifest.schema.json``)."""
    schema = BundleManifest.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "description": (
            "manifest.json of an nlp-bench submission bundle, schema version 1. Canonical JSON: "
            "sorted keys, no whitespace, UTF-8, floats as the shortest text that reads back as "
            "the same double, no NaN or infinities. See docs/submissions.md."
        ),
        **{k: v for k, v in schema.items() if k != "description"},
    }


if __name__ == "__main__":  # python -m bench.bundle.manifest > docs/bundle-manifest.schema.json
    import json

    print(json.dumps(manifest_json_schema(), indent=2, sort_keys=True))

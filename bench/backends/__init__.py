"""Model backends: what runs a model, behind two small protocols and a registry.

A backend turns a :class:`~bench.specs.ModelSpec` into a loaded model of one of two kinds:

- a :class:`Classifier` (label names; logits for texts or text pairs, batch-planned; a key per
  input so equal token sequences share one score), answering classification tasks and attacks;
- a :class:`LanguageModel` (loglikelihoods of continuations, greedy generation with stop strings,
  a chat template), answering tasks posed as prompts.

It also says exactly which model a spec names (:class:`ModelIdentity`: a content hash or a
resolved commit, never "unresolved"), which settings change its numbers, and whether a spec is a
classifier or a language model. Runs, attacks, prompting and transfer talk to these protocols
only; a new backend is one module plus its registration.

Backends are found by name (``ModelSpec.backend``; CLI ``--backend`` or a ``NAME:`` prefix):
the built-ins below, classes registered with :func:`register_backend`, and the ``bench.backends``
entry-point group (``name = "package.module:Class"``). Modules are imported on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, runtime_checkable

from bench.errors import ModelError, SpecError

if TYPE_CHECKING:
    import numpy as np

    from bench.specs import ModelSpec

ENTRY_POINT_GROUP = "bench.backends"
ModelType = Literal["classifier", "language_model"]

# name -> "module:attribute", imported on first use so `bench --help` loads no backend.
_BUILTIN: dict[str, str] = {
    "hf": "bench.backends.hf:HFBackend",
    "onnx": "bench.backends.onnx:ONNXBackend",
    "served": "bench.backends.served:ServedBackend",
}
_REGISTERED: dict[str, type[Backend]] = {}
_INSTANCES: dict[str, Backend] = {}


# --------------------------------------------------------------------------------------------------
# What a loaded model offers


@runtime_checkable
class Classifier(Protocol):
    """A sequence classifier: label names and logits for single texts or text pairs."""

    path: str

    @property
    def labels(self) -> list[str]: ...

    @property
    def num_labels(self) -> int: ...

    @property
    def device(self) -> str: ...

    @property
    def dtype(self) -> str: ...

    @property
    def torch_module(self) -> Any:
        """The torch module behind it, or None (TextAttack's wrapper reads it)."""

    def batch_plan(self, inputs: Sequence[tuple[str, ...]], batch_size: int) -> list[list[int]]: ...

    def predict_batches(
        self,
        inputs: Sequence[tuple[str, ...]],
        batch_size: int,
        skip: set[int] | None = None,
        plan: Sequence[Sequence[int]] | None = None,
    ) -> Iterator[tuple[list[int], np.ndarray]]: ...

    def classify(self, inputs: Sequence[tuple[str, ...]], batch_size: int = 32) -> np.ndarray: ...

    def token_keys(self, inputs: Sequence[tuple[str, ...]]) -> list[tuple[int, ...]]: ...

    def classify_padding_aware(
        self, inputs: Sequence[tuple[str, ...]], max_batch: int = 64, overhead_tokens: int = 64
    ) -> np.ndarray: ...


@runtime_checkable
class LanguageModel(Protocol):
    """A causal language model: loglikelihoods, greedy generation, chat formatting."""

    path: str
    max_length: int

    @property
    def device(self) -> str: ...

    @property
    def dtype(self) -> str: ...

    @property
    def has_chat_template(self) -> bool: ...

    def loglikelihood(
        self, requests: Sequence[tuple[str, str]], batch_size: int = 8
    ) -> list[tuple[float, bool, int]]:
        """Per ``(context, continuation)``: (sum of continuation log-probs, greedy, tokens)."""

    def greedy_until(
        self,
        requests: Sequence[tuple[str, list[str]]],
        max_new_tokens: int = 64,
        batch_size: int = 8,
    ) -> list[str]:
        """Greedy continuation of each context, cut before the first of its stop strings."""

    def apply_chat_template(self, messages: Sequence[dict[str, str]]) -> str: ...


# --------------------------------------------------------------------------------------------------
# Identity and settings


@dataclass(frozen=True)
class ModelIdentity:
    """Exactly which model a spec names.

    ``hash`` is a content hash of the files that decide predictions (a local folder), or the
    resolved commit (a hub repository), or what a served model reports. ``path`` is where it
    was found; for a local folder it is recorded but not keyed, so a moved but identical folder
    keeps its results.
    """

    backend: str
    kind: Literal["local", "hub", "served"]
    path: str
    hash: str
    revision: str | None = None

    def key(self) -> dict[str, Any]:
        """What enters run keys."""
        if self.kind == "local":
            return {"backend": self.backend, "kind": "local", "hash": self.hash}
        return {
            "backend": self.backend,
            "kind": self.kind,
            "id": self.path,
            "hash": self.hash,
            "revision": self.revision,
        }


@dataclass(frozen=True)
class LoadSettings:
    """How a model is loaded: device and dtype requests, and the longest input it is given."""

    device: str = "auto"
    dtype: str = "auto"
    max_length: int | None = None


# --------------------------------------------------------------------------------------------------
# Backends


class Backend(Protocol):
    """Loads models of one kind of runtime (see the module docstring)."""

    name: str

    def identity(self, spec: ModelSpec) -> ModelIdentity:
        """Which model ``spec`` names; a ModelError when that cannot be pinned."""

    def model_type(self, spec: ModelSpec) -> ModelType:
        """Classifier or language model, from metadata alone (no weights read)."""

    def require(self, spec: ModelSpec, model_type: ModelType) -> None:
        """Refuse, before any weights are read, a model that cannot serve as ``model_type``."""

    def key_settings(self, settings: LoadSettings) -> dict[str, Any]:
        """The load settings that change numbers, as they resolve here (``dtype: auto`` is
        bfloat16 on one machine and float32 on another: the key holds what it became)."""

    def load_classifier(self, spec: ModelSpec, settings: LoadSettings) -> Classifier: ...

    def load_language_model(self, spec: ModelSpec, settings: LoadSettings) -> LanguageModel: ...


B = TypeVar("B", bound=type)


def register_backend(name: str) -> Callable[[B], B]:
    """Class decorator: make a backend available as ``name``."""

    def register(cls: B) -> B:
        if name in _REGISTERED and _REGISTERED[name] is not cls:
            raise SpecError(f"backend {name!r} is registered twice")
        cls.name = name  # type: ignore[attr-defined]
        _REGISTERED[name] = cls
        return cls

    return register


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def backend_names() -> list[str]:
    return sorted({*_BUILTIN, *_REGISTERED, *_entry_points()})


def get_backend(name: str) -> Backend:
    """The backend called ``name`` (one instance per process)."""
    if name in _INSTANCES:
        return _INSTANCES[name]
    cls = _REGISTERED.get(name)
    if cls is None:
        target = _BUILTIN.get(name)
        try:
            if target is not None:
                module, attr = target.split(":")
                cls = getattr(importlib.import_module(module), attr)
            elif name in (eps := _entry_points()):
                cls = eps[name].load()
        except ImportError as exc:
            raise ModelError(
                f"backend {name!r} cannot be loaded ({exc}); is its extra installed?"
            ) from None
    if cls is None:
        raise SpecError(f"unknown backend {name!r} (known: {', '.join(backend_names())})")
    instance: Backend = cls()
    instance.name = name
    _INSTANCES[name] = instance
    return instance


# --------------------------------------------------------------------------------------------------
# A process's loaded models


@dataclass
class ModelPool:
    """Loads each model at most once per (spec, load settings, kind) and identifies each spec
    once (a local folder's identity reads every weight file)."""

    _models: dict[tuple[str, LoadSettings, str], Any] = field(default_factory=dict)
    _identities: dict[str, ModelIdentity] = field(default_factory=dict)
    loads: int = 0

    def identity(self, spec: ModelSpec) -> ModelIdentity:
        key = spec.canonical()
        if key not in self._identities:
            self._identities[key] = get_backend(spec.backend).identity(spec)
        return self._identities[key]

    def key_settings(self, spec: ModelSpec, settings: LoadSettings) -> dict[str, Any]:
        return get_backend(spec.backend).key_settings(settings)

    def classifier(self, spec: ModelSpec, settings: LoadSettings) -> Classifier:
        key = (spec.canonical(), settings, "classifier")
        if key not in self._models:
            self._models[key] = get_backend(spec.backend).load_classifier(spec, settings)
            self.loads += 1
        model: Classifier = self._models[key]
        return model

    def language_model(self, spec: ModelSpec, settings: LoadSettings) -> LanguageModel:
        key = (spec.canonical(), settings, "language_model")
        if key not in self._models:
            self._models[key] = get_backend(spec.backend).load_language_model(spec, settings)
            self.loads += 1
        model: LanguageModel = self._models[key]
        return model

    def model_type(self, spec: ModelSpec) -> ModelType:
        return get_backend(spec.backend).model_type(spec)

    def require(self, spec: ModelSpec, model_type: ModelType) -> None:
        get_backend(spec.backend).require(spec, model_type)

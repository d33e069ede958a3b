"""Attack and suite specs: attacks as data.

An attack is TextAttack's four parts (goal function, constraints, transformation, search method),
each named from an allow-list of components with JSON parameters. A recipe is a named composition
of those parts; a suite is a named, versioned list of attacks. Nothing here imports TextAttack, and
nothing in a spec is ever executed: component names are looked up in a fixed registry.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from bench.errors import listing
from bench.specs import SEED_MAX, Role, Spec, check_name

# Component parameters are plain JSON values; nested components (a composite transformation's
# parts) are dicts with a ``type`` and are validated by the registry when the attack is built.
JSONValue = Any


class ComponentSpec(Spec):
    """One TextAttack part, by registry name, with its constructor parameters."""

    type: str
    params: dict[str, JSONValue] = Field(default_factory=dict)


class CompositionSpec(Spec):
    """Goal function + constraints + transformation + search method."""

    goal: ComponentSpec = Field(default_factory=lambda: ComponentSpec(type="untargeted"))
    transformation: ComponentSpec
    constraints: list[ComponentSpec] = Field(default_factory=list)
    search: ComponentSpec


class AttackSpec(Spec):
    """One attack in a suite: a built-in recipe (optionally with parameter overrides) or an
    explicit composition."""

    name: str
    recipe: str | None = None
    # Recipe parameter overrides, e.g. {"max_candidates": 20}; what a recipe accepts is listed in
    # its definition, anything else is an error.
    params: dict[str, JSONValue] = Field(default_factory=dict)
    composition: CompositionSpec | None = None
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value, "attack")

    @model_validator(mode="after")
    def _one_of(self) -> AttackSpec:
        if (self.recipe is None) == (self.composition is None):
            raise ValueError(f"attack {self.name!r} needs exactly one of 'recipe' or 'composition'")
        if self.composition is not None and self.params:
            raise ValueError(f"attack {self.name!r}: 'params' apply to recipes only")
        return self


class SuiteSpec(Spec):
    """A named, versioned list of attacks (YAML beside the tasks, in ``tasks/suites``)."""

    name: str
    version: str = "1"
    description: str = ""
    attacks: list[AttackSpec]

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value, "suite")

    @model_validator(mode="after")
    def _unique(self) -> SuiteSpec:
        if not self.attacks:
            raise ValueError(f"suite {self.name!r} lists no attacks")
        names = [a.name for a in self.attacks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"suite {self.name!r} lists attack(s) twice: {listing(dupes, 4)}")
        return self


class AttackConfig(Spec):
    """Settings of an attack run that change its outcomes (and so enter its run key)."""

    split: Role = "test"
    limit: int | None = Field(default=100, ge=1)
    seed: int = Field(default=0, ge=0, le=SEED_MAX)
    # TextAttack counts every goal-function query (cache hits included) against this budget.
    query_budget: int | None = Field(default=None, ge=1)
    max_length: int = Field(default=256, ge=8)
    # Input columns the attack may modify (None: the last input, i.e. the hypothesis of a pair).
    attack_columns: list[str] | None = None
    # Bootstrap settings: they change metrics only, recomputed from stored rows (not keyed).
    n_bootstrap: int = Field(default=1000, ge=0)
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0)

    def identity(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"n_bootstrap", "confidence"})

    def metric_settings(self) -> Any:
        from bench.records import MetricSettings

        return MetricSettings(
            n_bootstrap=self.n_bootstrap, confidence=self.confidence, seed=self.seed
        )

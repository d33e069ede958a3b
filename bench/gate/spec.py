"""A gate config: data a user keeps in their repository (YAML, parsed, never executed).

```yaml
baseline: minilm-sentiment        # model names as stored (or given with --baseline/--candidate)
candidate: minilm-sentiment-int8
margin: 0.01                      # default non-inferiority margin of every check
alpha: 0.05
inconclusive: fail                # what an inconclusive blocking check does: fail or pass
checks:
  - {task: vader_movies}                              # accuracy, margin 0.01
  - {task: vader_movies, metric: macro_f1, margin: 0.02}
  - {task: vader_movies, metric: ece, margin: 0.02, blocking: false}   # advisory
  - {task: vader_movies, suite: typos, margin: 0.05}  # accuracy under attack, worst case
  - {task: strategyqa, shots: 3}                      # prompted: mean over templates
  - {task: strategyqa, shots: 3, template: 2}         # one template
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from bench.specs import Role, Spec

CHECK_METRICS: tuple[str, ...] = ("accuracy", "macro_f1", "ece", "brier")


class CheckSpec(Spec):
    """One check: a metric of the candidate against the baseline on one task (and suite, or
    shot count and template)."""

    task: str = Field(min_length=1, max_length=200)
    metric: str = "accuracy"
    # Robustness: accuracy under attack of this suite (the worst case over its attacks), or of
    # one of its attacks.
    suite: str | None = None
    attack: str | None = None
    # Prompted: this shot count, one template (numbered from 1) or the mean over templates.
    shots: int | None = Field(default=None, ge=0)
    template: int | None = Field(default=None, ge=1)
    margin: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    # A failed blocking check fails the gate (exit 1); an advisory one is reported only.
    blocking: bool = True

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        if value not in CHECK_METRICS:
            raise ValueError(f"metric must be one of {', '.join(CHECK_METRICS)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CheckSpec:
        if self.attack is not None and self.suite is None:
            raise ValueError("an attack check names its suite too")
        if self.template is not None and self.shots is None:
            raise ValueError("a template check names its shot count too (shots: 0)")
        if (self.suite or self.shots is not None) and self.metric != "accuracy":
            raise ValueError(
                "robustness and prompted checks compare accuracy (under attack, or over prompts)"
            )
        if self.suite is not None and self.shots is not None:
            raise ValueError("a check is either a robustness (suite) or a prompted (shots) check")
        return self

    @property
    def label(self) -> str:
        where = self.task
        if self.suite is not None:
            where += f"@{self.suite}" + (f"/{self.attack}" if self.attack else "")
        elif self.shots is not None:
            where += f"@{self.shots}shot" + (f"/t{self.template}" if self.template else "")
        return f"{where} {self.metric}"


class GateSpec(Spec):
    """A regression gate: candidate against baseline on every check, each verdict by a
    non-inferiority margin on a paired (cluster-aware, seed-aware) bootstrap CI."""

    name: str = Field(default="gate", max_length=100)
    baseline: str | None = None
    candidate: str | None = None
    margin: float = Field(default=0.0, ge=0.0, le=1.0, allow_inf_nan=False)
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5, allow_inf_nan=False)
    n_bootstrap: int = Field(default=2000, ge=100, le=100_000)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    # What an inconclusive blocking check does to the exit code.
    inconclusive: Literal["fail", "pass"] = "fail"
    # Multiplicity: Holm (family-wise) for blocking checks, Benjamini-Hochberg for advisory ones.
    correction: Literal["holm", "bh", "none"] = "holm"
    advisory_correction: Literal["holm", "bh", "none"] = "bh"
    # The split whose runs are gated when both models have pairable runs on several; with --run,
    # the settings missing runs are computed with (those of stored runs otherwise).
    split: Role = "test"
    limit: int | None = Field(default=None, ge=1)
    checks: list[CheckSpec] = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _unique(self) -> GateSpec:
        labels = [c.label for c in self.checks]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(f"check {dupes[0]!r} is listed twice")
        return self

    def margin_of(self, check: CheckSpec) -> float:
        return self.margin if check.margin is None else check.margin


def load_gate(path: Path) -> GateSpec:
    """A gate config file (YAML, read as data), with a one-line error naming it."""
    from bench.specs import parse_spec, read_yaml

    return parse_spec(GateSpec, read_yaml(path, "gate config"), str(path), "a gate config")

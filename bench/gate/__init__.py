"""Regression gates: a candidate model against a baseline, check by check, each verdict by a
paired (cluster- and seed-aware) bootstrap CI against a non-inferiority margin.

``bench gate`` (CLI), ``bench.gate.run_gate`` (library), and the pytest plugin
(``pytest --bench-gate gate.yaml``, or the ``bench_gate`` fixture) all produce a ``GateResult``.
"""

from bench.gate.checks import CheckResult, GateResult, run_gate
from bench.gate.spec import CheckSpec, GateSpec, load_gate

__all__ = ["CheckResult", "CheckSpec", "GateResult", "GateSpec", "load_gate", "run_gate"]

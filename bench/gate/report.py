"""A gate's verdicts as a person and a CI system read them: a Markdown table, JSON, JUnit XML.

Every format states the same verdicts; the exit code of ``bench gate`` is derived from them in
one place (``GateResult.exit_code``), so the printed verdict and the exit code cannot disagree.
"""

from __future__ import annotations

import json
import math
from typing import Any
from xml.etree import ElementTree as ET

from bench.gate.checks import CheckResult, GateResult

MARK = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE"}


def _p(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.3g}" if x >= 1e-3 else "<0.001"


def _esc(text: str) -> str:
    return text.replace("|", r"\|").replace("<", r"\<")


def _decide(c: CheckResult) -> str:
    if c.verdict != "inconclusive":
        return ""
    if c.n_to_decide is None:
        return "on the margin"
    return f"~{c.n_to_decide:,} examples would decide"


def markdown(result: GateResult) -> str:
    spec = result.spec
    level = f"{100 * (1 - spec.alpha):g}%"
    lines = [
        f"## Gate {_esc(spec.name)}: {_esc(result.candidate)} vs {_esc(result.baseline)} — "
        f"{'PASSED' if result.passed else 'FAILED'}",
        "",
        f"| check | n | baseline | candidate | Δ [{level} CI] | margin | p (pass / fail) | "
        "McNemar p | verdict | notes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in result.checks:
        lo, hi = c.ci
        n = f"{c.difference.n}"
        if c.difference.n_clusters != c.difference.n:
            n += f" ({c.difference.n_clusters} clusters)"
        notes = []
        if c.unpaired:
            notes.append(f"{c.unpaired} unpaired")
        if max(c.seeds) > 1:
            notes.append(f"seeds {c.seeds[0]} / {c.seeds[1]}")
        if not c.check.blocking:
            notes.append("advisory")
        if c.lower_is_better:
            notes.append("lower is better")
        decide = _decide(c)
        if decide:
            notes.append(decide)
        lines.append(
            f"| {_esc(c.check.label)} | {n} | {c.baseline:.4f} | {c.candidate:.4f} | "
            f"{c.diff:+.4f} [{lo:+.4f}, {hi:+.4f}] | {c.margin:g} | "
            f"{_p(c.p_pass_adjusted)} / {_p(c.p_fail_adjusted)} | {_p(c.p_mcnemar)} | "
            f"**{MARK[c.verdict]}** | {'; '.join(notes)} |"
        )
    blocking = [c for c in result.checks if c.check.blocking]
    lines += [
        "",
        f"Δ = candidate − baseline; paired by example, clusters resampled together; "
        f"{spec.n_bootstrap} bootstrap resamples, seed {spec.seed}. A check passes when the CI's "
        f"worse end is within the margin, fails when its better end is beyond it, and is "
        f"inconclusive otherwise (inconclusive blocking checks {spec.inconclusive} the gate). "
        f"p-values are {spec.correction}-adjusted across the {len(blocking)} blocking check(s), "
        f"{spec.advisory_correction}-adjusted across advisory ones.",
    ]
    return "\n".join(lines) + "\n"


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def as_json(result: GateResult) -> dict[str, Any]:
    return {
        "gate": result.spec.name,
        "baseline": result.baseline,
        "candidate": result.candidate,
        "passed": result.passed,
        "exit_code": result.exit_code,
        "settings": result.spec.model_dump(mode="json", exclude={"checks"}),
        "checks": [
            {
                "check": c.check.label,
                "task": c.check.task,
                "metric": c.check.metric,
                "suite": c.check.suite,
                "attack": c.check.attack,
                "shots": c.check.shots,
                "template": c.check.template,
                "blocking": c.check.blocking,
                "margin": c.margin,
                "n": c.difference.n,
                "clusters": c.difference.n_clusters,
                "unpaired": c.unpaired,
                "seeds": list(c.seeds),
                "baseline": c.baseline,
                "candidate": c.candidate,
                "diff": c.diff,
                "low": c.ci[0],
                "high": c.ci[1],
                "se": c.difference.se,
                "p_pass": c.p_pass,
                "p_fail": c.p_fail,
                "p_pass_adjusted": c.p_pass_adjusted,
                "p_fail_adjusted": c.p_fail_adjusted,
                "p_mcnemar": _finite(c.p_mcnemar),
                "verdict": c.verdict,
                "minimum_detectable_effect": c.mde,
                "n_to_decide": c.n_to_decide,
                "lower_is_better": c.lower_is_better,
                "baseline_runs": list(c.baseline_runs),
                "candidate_runs": list(c.candidate_runs),
            }
            for c in result.checks
        ],
    }


def to_json(result: GateResult) -> str:
    return json.dumps(as_json(result), indent=2) + "\n"


def junit(result: GateResult) -> str:
    """JUnit XML: one testsuite, one testcase per check. A failed check is a ``failure``; an
    inconclusive one is a ``failure`` when inconclusive blocking checks fail the gate, else
    ``skipped``; an advisory check that fails is ``skipped`` with the reason (it does not fail the
    build, and the CI system still shows it)."""
    failing = {id(c) for c in result.blocking_failures()}
    suite = ET.Element(
        "testsuite",
        name=f"bench gate {result.spec.name}",
        tests=str(len(result.checks)),
        failures=str(len(failing)),
        errors="0",
        skipped=str(sum(1 for c in result.checks if id(c) not in failing and c.verdict != "pass")),
    )
    for c in result.checks:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"bench.gate.{result.spec.name}",
            name=c.check.label,
            time="0",
        )
        lo, hi = c.ci
        message = (
            f"{MARK[c.verdict]}: {result.candidate} - {result.baseline} = {c.diff:+.4f} "
            f"[{lo:+.4f}, {hi:+.4f}], margin {c.margin:g}, n {c.difference.n}"
        )
        if id(c) in failing:
            node = ET.SubElement(case, "failure", message=message, type=c.verdict)
            node.text = markdown(result)
        elif c.verdict != "pass":
            ET.SubElement(case, "skipped", message=message)
        ET.SubElement(case, "system-out").text = message
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"

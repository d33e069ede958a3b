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


_METHOD = {"holm": "Holm", "bh": "Benjamini-Hochberg"}


def _adjustments(result: GateResult) -> tuple[str, bool]:
    """How the p-values shown were adjusted, per kind of check that the gate has; and whether
    any were (if not, every verdict is its CI's)."""
    spec = result.spec
    parts = []
    adjusted = False
    for blocking, method in ((True, spec.correction), (False, spec.advisory_correction)):
        count = sum(1 for c in result.checks if c.check.blocking is blocking)
        kind = "blocking" if blocking else "advisory"
        if count == 0:
            continue
        if count == 1:
            parts.append(f"not adjusted for the one {kind} check (nothing to correct for)")
        elif method == "none":
            parts.append(f"not adjusted across the {count} {kind} checks (correction: none)")
        else:
            parts.append(f"{_METHOD[method]}-adjusted across the {count} {kind} checks")
            adjusted = True
    return "p-values are " + " and ".join(parts) + ".", adjusted


def heading(result: GateResult) -> str:
    """The gate's verdict line (the default name "gate" is not repeated after "Gate")."""
    name = result.spec.name
    named = "" if name == "gate" else f" {_esc(name)}"
    return (
        f"## Gate{named}: {_esc(result.candidate)} vs {_esc(result.baseline)} — "
        f"{'PASSED' if result.passed else 'FAILED'}"
    )


def markdown(result: GateResult) -> str:
    spec = result.spec
    level = f"{100 * (1 - spec.alpha):g}%"
    lines = [
        heading(result),
        "",
        f"| check | n | baseline | candidate | Δ [{level} CI] | margin | p (pass / fail) | "
        "McNemar p | verdict | notes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in result.checks:
        lo, hi = c.improvement_ci
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
            notes.append("lower is better: Δ = baseline − candidate")
        decide = _decide(c)
        if decide:
            notes.append(decide)
        lines.append(
            f"| {_esc(c.check.label)} | {n} | {c.baseline:.4f} | {c.candidate:.4f} | "
            f"{c.improvement:+.4f} [{lo:+.4f}, {hi:+.4f}] | {c.margin:g} | "
            f"{_p(c.p_pass_adjusted)} / {_p(c.p_fail_adjusted)} | {_p(c.p_mcnemar)} | "
            f"**{MARK[c.verdict]}** | {'; '.join(notes)} |"
        )
    adjustments, adjusted = _adjustments(result)
    if adjusted:
        ci_rule = (
            "Unadjusted, these are the CI's lower end above −margin and its upper end below "
            "−margin; the CI shown is unadjusted, so a CI wholly beyond the margin can still be "
            "inconclusive."
        )
    else:
        ci_rule = (
            "With nothing adjusted, these are exactly the CI's lower end above −margin and its "
            "upper end below −margin."
        )
    lines += [
        "",
        f"Δ = candidate − baseline, or baseline − candidate where lower is better, so a "
        f"negative Δ is always worse; paired by example, clusters resampled together; "
        f"{spec.n_bootstrap} bootstrap resamples, seed {spec.seed}. A check passes when its "
        f'adjusted p-value against "worse by the margin or more" is below {spec.alpha:g}, '
        f'fails when its adjusted p-value against "within the margin" is below {spec.alpha:g}, '
        f"and is inconclusive otherwise (inconclusive blocking checks {spec.inconclusive} the "
        f"gate). {ci_rule} {adjustments}",
    ]
    return "\n".join(lines) + "\n"


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def as_json(result: GateResult) -> dict[str, Any]:
    settings = result.spec.model_dump(mode="json", exclude={"checks"})
    # The models gated, also when they were passed to run_gate rather than named in the config.
    settings["baseline"] = settings["baseline"] or result.baseline
    settings["candidate"] = settings["candidate"] or result.candidate
    return {
        "gate": result.spec.name,
        "baseline": result.baseline,
        "candidate": result.candidate,
        "passed": result.passed,
        "exit_code": result.exit_code,
        "settings": settings,
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
                "improvement": c.improvement,
                "improvement_low": c.improvement_ci[0],
                "improvement_high": c.improvement_ci[1],
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
    # The default name "gate" is not repeated ("bench gate gate"), as in the Markdown heading.
    suite = ET.Element(
        "testsuite",
        name="bench gate" if result.spec.name == "gate" else f"bench gate {result.spec.name}",
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
        lo, hi = c.improvement_ci
        what = (
            f"{result.baseline} - {result.candidate} (lower is better)"
            if c.lower_is_better
            else f"{result.candidate} - {result.baseline}"
        )
        message = (
            f"{MARK[c.verdict]}: {what} = {c.improvement:+.4f} "
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

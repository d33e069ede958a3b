"""A bundle's numbers in the formats other tools read.

- ``model_index``: the ``model-index`` block of a Hugging Face model card (YAML front matter of
  its README): one result per leaderboard column (task, task@suite, task@3shot ...), each metric
  with its value; its interval, n and the bootstrap settings go in the metric's ``args``, and a
  human-readable ``name`` says the same. Partial runs (a seeded sample of the split) are left
  out: they are never ranked.
- ``lm_eval_results``: the results JSON lm-evaluation-harness writes (``results`` with
  ``"acc,none"`` style keys, ``configs``, ``versions``, ``n-shot``, ``higher_is_better``,
  ``n-samples`` with the split's size as ``original`` and the examples run as ``effective``),
  one task entry per leaderboard column; partial runs are kept, as lm-eval keeps ``--limit``
  runs, with their ``effective`` count. lm-eval's standard errors are not computed here:
  ``_stderr`` is ``"N/A"`` (as lm-eval writes without bootstrap) and the percentile interval is
  given as ``_ci_low`` / ``_ci_high``.

Both are built from the manifest's data alone, so a validator regenerates them and compares.
"""

from __future__ import annotations

import json
from typing import Any

MODEL_INDEX = "interop/model-index.yaml"
LM_EVAL = "interop/lm-eval-results.json"

# Our metric names as lm-evaluation-harness spells the same quantities.
_LM_EVAL_NAMES = {"accuracy": "acc", "accuracy_norm": "acc_norm"}
_TASK_TYPES = {
    "classification": ("text-classification", "Text Classification"),
    "multiple_choice": ("multiple-choice", "Multiple Choice"),
    "generation": ("text-generation", "Text Generation"),
}


def _scored(name: str) -> bool:
    """A metric that scores the model (accuracy, F1, ECE, ...), not a count or a flag."""
    from bench.metrics import higher_is_better

    return higher_is_better(name) is not None


def _task_kind(manifest: dict[str, Any], task: str) -> str:
    for info in manifest.get("tasks", []):
        if info.get("name") == task:
            return str(info.get("spec", {}).get("kind", "classification"))
    return "classification"


def _split_size(manifest: dict[str, Any], task: str, split: str) -> int | None:
    for info in manifest.get("tasks", []):
        if info.get("name") == task:
            size = info.get("splits", {}).get(split)
            return int(size) if isinstance(size, int) else None
    return None


def _label(run: dict[str, Any]) -> str:
    return f"{run['task']}@{run['column']}" if run.get("column") else str(run["task"])


def _runs(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted(manifest.get("runs", []), key=lambda r: (_label(r), r["kind"], r["key"]))


def model_index(manifest: dict[str, Any]) -> dict[str, Any]:
    """The ``model-index`` block (as data) of the manifest's complete runs."""
    results = []
    for run in _runs(manifest):
        if run.get("partial"):
            continue
        settings = run["metric_settings"]
        confidence = settings["confidence"]
        metrics = []
        for name, m in sorted(run["metrics"].items()):
            if not _scored(name):
                continue
            args: dict[str, Any] = {
                "n": run["n_examples"],
                "confidence": confidence,
                "n_bootstrap": settings["n_bootstrap"],
                "bootstrap_seed": settings["seed"],
                "ci_low": m["low"],
                "ci_high": m["high"],
                "run_key": run["key"],
            }
            interval = f" [{m['low']:.3f}, {m['high']:.3f}]" if m["low"] is not None else " (no CI)"
            metrics.append(
                {
                    "type": name,
                    "value": m["value"],
                    "name": f"{name} {m['value']:.3f}{interval} n={run['n_examples']}",
                    "verified": False,
                    "args": args,
                }
            )
        if not metrics:
            continue
        kind = _task_kind(manifest, run["task"])
        task_type, task_name = _TASK_TYPES.get(kind, _TASK_TYPES["classification"])
        results.append(
            {
                "task": {"type": task_type, "name": task_name},
                "dataset": {
                    "name": _label(run),
                    "type": run["task"],
                    "config": run.get("column") or "clean",
                    "split": run["split"],
                    "revision": run["task_hash"],
                },
                "metrics": metrics,
            }
        )
    return {"model-index": [{"name": manifest["model"]["name"], "results": results}]}


def lm_eval_results(manifest: dict[str, Any]) -> dict[str, Any]:
    """A results JSON in the shape lm-evaluation-harness writes."""
    results: dict[str, Any] = {}
    configs: dict[str, Any] = {}
    versions: dict[str, Any] = {}
    n_shot: dict[str, int] = {}
    better: dict[str, Any] = {}
    samples: dict[str, Any] = {}
    from bench.metrics import higher_is_better

    for run in _runs(manifest):
        label = _label(run)
        entry: dict[str, Any] = {"alias": label}
        directions: dict[str, bool] = {}
        for name, m in sorted(run["metrics"].items()):
            if not _scored(name):
                continue
            short = _LM_EVAL_NAMES.get(name, name)
            entry[f"{short},none"] = m["value"]
            entry[f"{short}_stderr,none"] = "N/A"
            entry[f"{short}_ci_low,none"] = m["low"]
            entry[f"{short}_ci_high,none"] = m["high"]
            directions[short] = bool(higher_is_better(name))
        if not directions:
            continue
        config = run["config"]
        shots = int(config.get("k", 0)) if isinstance(config.get("k"), int) else 0
        results[label] = entry
        kind = _task_kind(manifest, run["task"])
        configs[label] = {
            "task": label,
            "dataset_name": run["task"],
            "test_split": run["split"],
            "num_fewshot": shots,
            "output_type": {
                "generation": "generate_until",
                "classification": "multiple_choice",
            }.get(kind, "multiple_choice"),
            "metric_list": [
                {"metric": short, "aggregation": "mean", "higher_is_better": up}
                for short, up in directions.items()
            ],
            "metadata": {
                "version": run["task_version"],
                "nlp_bench_kind": run["kind"],
                "run_key": run["key"],
                "partial": run["partial"],
                "confidence": run["metric_settings"]["confidence"],
            },
        }
        versions[label] = run["task_version"]
        n_shot[label] = shots
        better[label] = directions
        size = _split_size(manifest, run["task"], run["split"])
        samples[label] = {
            "original": size if size is not None else run["n_examples"],
            "effective": run["n_examples"],
        }
    model = manifest["model"]
    return {
        "results": results,
        "group_subtasks": {},
        "configs": configs,
        "versions": versions,
        "n-shot": n_shot,
        "higher_is_better": better,
        "n-samples": samples,
        "config": {
            "model": f"nlp-bench/{model['backend']}",
            "model_args": f"pretrained={model['reference']}",
            "model_name": model["name"],
            "model_sha": model["hash"],
        },
        "model_name": model["name"],
        "git_hash": None,
        "nlp_bench_version": manifest["harness"]["version"],
    }


def model_index_yaml(manifest: dict[str, Any]) -> str:
    import yaml

    return str(yaml.safe_dump(model_index(manifest), sort_keys=False, allow_unicode=True))


def lm_eval_json(manifest: dict[str, Any]) -> str:
    return (
        json.dumps(lm_eval_results(manifest), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    )


def files_for(manifest: dict[str, Any]) -> dict[str, bytes]:
    """The interop files of a bundle, from its manifest's data."""
    return {
        MODEL_INDEX: model_index_yaml(manifest).encode("utf-8"),
        LM_EVAL: lm_eval_json(manifest).encode("utf-8"),
    }

"""Shared by the bundle tests, the bundle fuzz section and the validation benchmark: a small
local pair task with a prompt format, runs of every kind in a store, and bundles of them.

The runs are real: the tiny random BERT classifier evaluated and attacked (DeepWordBug), and
the tiny random Llama prompted, through the same engine as any other run.
"""

from __future__ import annotations

import io
import json
import random
import zipfile
from pathlib import Path
from typing import Any

from conftest import TINY_WORDS

LABELS = ["entailment", "neutral", "contradiction"]
TASK_NAME = "bundle_nli"


def write_task(folder: Path, n: int = 60, name: str = TASK_NAME, seed: int = 3) -> Path:
    """A local pair task (``{name}.yaml`` beside its data) with a 30/70 train/test split and a
    prompt format, so classifiers and causal LMs can both answer it."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    with (folder / f"{name}.jsonl").open("w", encoding="utf-8") as fh:
        for i in range(n):
            premise = " ".join(rng.choices(TINY_WORDS, k=rng.randint(4, 10)))
            hypothesis = " ".join(rng.choices(TINY_WORDS, k=rng.randint(3, 8)))
            row = {"premise": premise, "hypothesis": hypothesis, "label": LABELS[i % 3]}
            fh.write(json.dumps(row) + "\n")
    task = folder / f"{name}.yaml"
    task.write_text(
        f"name: {name}\nsource: {{type: local, path: {name}.jsonl}}\n"
        "inputs: [premise, hypothesis]\nlabels: [entailment, neutral, contradiction]\n"
        "splits: {fractions: {train: 0.3, test: 0.7}}\n"
        "prompt:\n"
        "  templates: ['{premise} Question: {hypothesis}? Answer:', '{premise} => {hypothesis}:']\n"
        "  choices: [' yes', ' maybe', ' no']\n"
        "  target_delimiter: ''\n"
        "  fewshot: {k: 1, split: train, seed: 7}\n",
        encoding="utf-8",
    )
    return task


def populate(
    db: Path,
    task: Path,
    model_dir: Path,
    *,
    name: str = "tiny",
    lm_dir: Path | None = None,
    attack: bool = True,
    attack_limit: int = 6,
    limit: int | None = None,
) -> None:
    """Store runs of ``model_dir`` (as ``name``) on ``task``: a clean evaluation, and with
    ``attack`` a DeepWordBug suite on a seeded sample; with ``lm_dir`` the tiny Llama (as
    ``lm``) prompted with both templates at 0 shots."""
    import bench
    from bench.attacks.specs import AttackSpec, SuiteSpec

    bench.evaluate([f"{name}={model_dir}"], [task], db=db, device="cpu", limit=limit)
    if attack:
        suite = SuiteSpec(
            name="typos", attacks=[AttackSpec(name="deepwordbug", recipe="deepwordbug")]
        )
        bench.attack(
            [f"{name}={model_dir}"],
            [task],
            [suite],
            db=db,
            device="cpu",
            limit=attack_limit,
            max_length=64,
            concurrency=4,
        )
    if lm_dir is not None:
        bench.prompt([f"lm={lm_dir}"], [task], shots=[0], db=db, device="cpu", limit=limit)


def submit_both(db: Path, task: Path, folder: Path) -> dict[str, Path]:
    """``bench submit`` of the classifier and the language model ``populate`` stored: one bundle
    each, written as ``folder/NAME.zip``."""
    from fuzz.fuzzkit import run_cli

    bundles = {}
    for name in ("tiny", "lm"):
        out = folder / f"{name}.zip"
        result = run_cli(
            ["submit", "-m", name, "--db", str(db), "--out", str(out), "--tasks-dir",
             str(task.parent)]
        )  # fmt: skip
        assert result.exit_code == 0, result.describe()
        bundles[name] = out
    return bundles


def read_zip(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def write_zip(
    members: dict[str, bytes] | list[tuple[str, bytes]],
    path: Path | None = None,
    compression: int = zipfile.ZIP_DEFLATED,
) -> bytes:
    """Members as zip bytes (and written to ``path`` when given), in the order given."""
    items = list(members.items()) if isinstance(members, dict) else list(members)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as zf:
        for name, data in items:
            zf.writestr(name, data)
    data = buffer.getvalue()
    if path is not None:
        path.write_bytes(data)
    return data


def manifest_of(members: dict[str, bytes]) -> dict[str, Any]:
    return json.loads(members["manifest.json"])


def reseal(members: dict[str, bytes], manifest: dict[str, Any] | None = None) -> dict[str, bytes]:
    """The bundle re-sealed after an edit: rows files taken as they are now, leaf lists,
    Merkle roots, interop files and file hashes recomputed (as a forger would)."""
    from bench.bundle.build import seal

    data = manifest if manifest is not None else manifest_of(members)
    row_files = {
        r["key"]: members[r["rows"]["file"]] for r in data["runs"] if r.get("rows") is not None
    }
    readme = members.get("model/README.md")
    sealed, _ = seal(data, row_files, readme)
    return dict(sealed)

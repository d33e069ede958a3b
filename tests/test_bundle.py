"""Submission bundles end to end (issue 14): submit, validate, rescore, import, leaderboard
provenance, interop exports, the published schema, and the store's key parts.

The runs are real and small: the tiny random BERT evaluated and attacked with DeepWordBug, the
tiny random Llama prompted with two templates, on a 60-example local pair task (39 test
examples). Hostile and tampered bundles are in ``tests/fuzz/test_fuzz_bundles.py``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bundle_helpers as bh
import pytest
from conftest import build_tiny_model
from fuzz.fuzzkit import CliResult, assert_one_line_error, run_cli
from lm_helpers import build_tiny_llama

from bench.store import ResultStore

KINDS = ["eval", "suite", "prompt_set", "attack", "prompt"]


@dataclass(frozen=True)
class World:
    root: Path
    tasks: Path  # folder of the task YAML
    db: Path  # the store the runs were computed in
    model: Path  # the tiny classifier ("tiny")
    lm: Path  # the tiny Llama ("lm")
    bundles: dict[str, Path]

    def cli(self, *argv: str, timeout: float = 120) -> CliResult:
        return run_cli(list(argv), {"HF_HUB_OFFLINE": "1"}, timeout=timeout)


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, torch_one_thread: None
) -> World:
    root = tmp_path_factory.mktemp("bundles")
    task = bh.write_task(root / "tasks")
    lm = build_tiny_llama(root / "llama")
    db = root / "source.sqlite"
    bh.populate(db, task, tiny_model_dir, lm_dir=lm)
    bundles = bh.submit_both(db, task, root)
    return World(root, task.parent, db, tiny_model_dir, lm, bundles)


def _rows(db: Path, metric: str = "accuracy", **settings: Any) -> list[Any]:
    from bench.records import MetricSettings
    from bench.summary import result_rows

    with ResultStore(db, readonly=True) as store:
        records = store.latest_complete(kinds=KINDS, ranked=True)
        return result_rows(store, records, metric, MetricSettings(**settings))


def _cells(rows: list[Any]) -> list[tuple[Any, ...]]:
    return sorted(
        (
            r.model,
            r.label,
            r.value,
            r.low,
            r.high,
            r.n,
            r.majority,
            r.spread,
            r.profile,
            r.dominant_label,
            r.run_key,
        )
        for r in rows
    )


# --------------------------------------------------------------------------------------------------
# Done-when 1: the round trip


def test_bundles_validate_import_and_render_the_same_leaderboard(
    world: World, tmp_path: Path
) -> None:
    """Clean, under attack and prompted runs: each bundle validates, both import into an empty
    store, and every leaderboard cell (value, CI, n, majority, spread, profile) is the one the
    source store renders; only the provenance mark differs, and says so."""
    for path in world.bundles.values():
        result = world.cli("validate", str(path), "--tasks-dir", str(world.tasks))
        assert result.exit_code == 0, result.describe()
        assert result.stdout.strip().endswith(f"{path.name}: valid")
    target = tmp_path / "leaderboard.sqlite"
    result = world.cli(
        "import",
        *map(str, world.bundles.values()),
        "--db",
        str(target),
        "--tasks-dir",
        str(world.tasks),
    )
    assert result.exit_code == 0, result.describe()
    assert "3 runs imported (imported)" in result.stdout

    source, imported = _rows(world.db), _rows(target)
    assert {r.label for r in source} == {
        "bundle_nli",
        "bundle_nli@typos",
        "bundle_nli@typos/deepwordbug",
        "bundle_nli@0shot",
        "bundle_nli@0shot/t1",
        "bundle_nli@0shot/t2",
    }
    assert _cells(imported) == _cells(source)
    assert {r.provenance for r in source} == {None}
    assert {r.provenance for r in imported} == {"imported"}
    from bench.report.leaderboard import render

    plain = [dataclasses.replace(r, provenance=None) for r in imported]
    for fmt in ("markdown", "html", "latex", "json", "csv"):
        assert render(plain, fmt) == render(source, fmt), fmt  # type: ignore[arg-type]
    shown = render(imported, "markdown")
    assert "§" in shown and "imported from a submission bundle" in shown

    # Other bootstrap settings are recomputed from the imported rows exactly as from the
    # source's.
    again = {"n_bootstrap": 200, "confidence": 0.9, "seed": 3}
    assert _cells(_rows(target, **again)) == _cells(_rows(world.db, **again))
    for metric in ("macro_f1", "ece"):
        assert _cells(_rows(target, metric)) == _cells(_rows(world.db, metric))

    # The command line says where each row came from.
    result = world.cli("leaderboard", "--db", str(target), "--format", "json")
    assert result.exit_code == 0, result.describe()
    doc = json.loads(result.stdout)
    assert {r["provenance"] for r in doc["rows"]} == {"imported"}
    local = json.loads(world.cli("leaderboard", "--db", str(world.db), "-f", "json").stdout)
    assert {r["provenance"] for r in local["rows"]} == {"local"}
    strip = [{k: v for k, v in r.items() if k != "provenance"} for r in doc["rows"]]
    assert strip == [{k: v for k, v in r.items() if k != "provenance"} for r in local["rows"]]

    # Importing again keeps what is there.
    result = world.cli(
        "import", str(world.bundles["tiny"]), "--db", str(target), "--tasks-dir", str(world.tasks)
    )
    assert result.exit_code == 0, result.describe()
    assert (
        result.stdout.strip()
        == "tiny.zip: nothing imported, its 3 runs are already in the store (kept)"
    )
    with ResultStore(target, readonly=True) as store:
        prov = store.provenance(r.run_key for r in store.runs())
        assert len(prov) == 6 and {p.bundle_name for p in prov.values()} == {"tiny.zip", "lm.zip"}
        assert all(not p.partial and p.rescored == 0 for p in prov.values())


def test_a_bundle_holds_what_the_issue_lists(world: World) -> None:
    from bench.bundle import merkle
    from bench.store import run_key

    members = bh.read_zip(world.bundles["tiny"])
    text = members["manifest.json"].decode()
    manifest = json.loads(text)
    assert (
        text
        == json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
    )
    assert manifest["schema_version"] == 1 and manifest["harness"]["name"] == "nlp-bench"
    assert manifest["environment"]["devices"] == ["cpu"]
    assert manifest["environment"]["dtypes"] == ["float32"]
    assert {"torch", "transformers", "numpy"} <= set(manifest["environment"]["versions"])
    model = manifest["model"]
    assert model["kind"] == "local" and model["reference"] == world.model.name
    assert str(world.root) not in text and str(world.model) not in text  # no machine paths
    (task,) = manifest["tasks"]
    assert task["name"] == "bundle_nli" and task["splits"] == {"train": 21, "test": 39}
    assert task["spec"]["labels"] == bh.LABELS
    runs = {r["kind"]: r for r in manifest["runs"]}
    assert set(runs) == {"eval", "attack", "suite"}
    for run in manifest["runs"]:
        assert run_key(run["key_parts"]) == run["key"]
        assert run["metrics"]["accuracy" if run["kind"] == "eval" else "accuracy_under_attack"]
        assert run["metric_settings"] == {"confidence": 0.95, "n_bootstrap": 1000, "seed": 0}
    assert runs["suite"]["members"] == [runs["attack"]["key"]]
    assert runs["attack"]["attack_spec"] == {
        "name": "deepwordbug",
        "recipe": "deepwordbug",
        "params": {},
        "composition": None,
        "description": "",
    }
    acc = runs["eval"]["metrics"]["accuracy"]
    assert acc["low"] <= acc["value"] <= acc["high"]
    # Rows: canonical lines whose leaves build the run's root, runs' roots the bundle's.
    roots = []
    for run in manifest["runs"]:
        if run["rows"] is None:
            continue
        lines = members[run["rows"]["file"]].decode().splitlines()
        assert len(lines) == run["n_examples"] == run["rows"]["count"]
        leaves = [merkle.leaf(line.encode()) for line in lines]
        assert members[run["rows"]["leaves"]].decode().split() == leaves
        assert merkle.root(leaves) == run["rows"]["merkle_root"]
        roots.append((run["key"], run["rows"]["merkle_root"]))
    assert merkle.root([r for _, r in sorted(roots)]) == manifest["merkle"]["root"]
    attack_row = json.loads(members[runs["attack"]["rows"]["file"]].decode().splitlines()[0])
    assert {"original", "perturbed", "status"} <= set(attack_row)
    import hashlib

    listed = {f["path"]: f["sha256"] for f in manifest["files"]}
    assert set(listed) == set(members) - {"manifest.json"}
    assert all(hashlib.sha256(members[p]).hexdigest() == h for p, h in listed.items())
    prompts = bh.manifest_of(bh.read_zip(world.bundles["lm"]))
    row = json.loads(
        bh.read_zip(world.bundles["lm"])[
            next(r for r in prompts["runs"] if r["kind"] == "prompt")["rows"]["file"]
        ]
        .decode()
        .splitlines()[0]
    )
    assert row["prompt"].endswith("Answer:") or row["prompt"].endswith(":")
    assert row["choices"] == [" yes", " maybe", " no"]


# --------------------------------------------------------------------------------------------------
# Partial runs


def test_a_limited_run_is_partial_validated_against_its_sample_and_never_ranked(
    world: World, tmp_path: Path
) -> None:
    db = tmp_path / "partial.sqlite"
    bh.populate(
        db, world.tasks / "bundle_nli.yaml", world.model, name="quick", attack=False, limit=10
    )
    out = tmp_path / "quick.zip"
    result = world.cli(
        "submit", "-m", "quick", "--db", str(db), "--out", str(out), "--tasks-dir", str(world.tasks)
    )
    assert result.exit_code == 0 and "1 partial (never ranked)" in result.stdout, result.describe()
    (run,) = bh.manifest_of(bh.read_zip(out))["runs"]
    assert run["partial"] is True and run["n_examples"] == 10
    result = world.cli("validate", str(out), "--tasks-dir", str(world.tasks))
    assert result.exit_code == 0 and "1 partial: never ranked" in result.stdout, result.describe()
    # Marked complete, it is refused: its limit makes it partial.
    members = bh.read_zip(out)
    manifest = bh.manifest_of(members)
    manifest["runs"][0]["partial"] = False
    bh.write_zip(bh.reseal(members, manifest), tmp_path / "claims-complete.zip")
    result = world.cli(
        "validate", str(tmp_path / "claims-complete.zip"), "--tasks-dir", str(world.tasks)
    )
    assert_one_line_error(result, ["marked complete, but its limit 10 makes it partial"])
    target = tmp_path / "board.sqlite"
    result = world.cli(
        "import",
        str(out),
        str(world.bundles["tiny"]),
        "--db",
        str(target),
        "--tasks-dir",
        str(world.tasks),
    )
    assert result.exit_code == 0 and "1 partial (never ranked)" in result.stdout, result.describe()
    result = world.cli("leaderboard", "--db", str(target))
    assert result.exit_code == 0, result.describe()
    assert "quick" not in result.stdout and "tiny" in result.stdout
    assert result.stderr.strip() == (
        "note: 1 partial run(s) imported from bundles (a sample of their split) are not ranked"
    )
    alone = tmp_path / "alone.sqlite"
    assert (
        world.cli("import", str(out), "--db", str(alone), "--tasks-dir", str(world.tasks)).exit_code
        == 0
    )
    assert_one_line_error(world.cli("leaderboard", "--db", str(alone)), ["never ranked"])
    # The run is there, with its provenance, for anyone who looks.
    listing = json.loads(world.cli("runs", "list", "--db", str(alone), "-f", "json").stdout)
    assert [r["model"] for r in listing] == ["quick"]


# --------------------------------------------------------------------------------------------------
# Done-when 3: rescore


def _forge_model(members: dict[str, bytes], genuine: dict[str, Any]) -> dict[str, bytes]:
    """A bundle of one model's rows that names another model (``genuine``'s): keys, key parts
    and files rebuilt as a careful forger would, so only a rescore can tell."""
    from bench.store import run_key

    manifest = bh.manifest_of(members)
    manifest["model"] = genuine["model"]
    identity = next(r for r in genuine["runs"] if r["kind"] == "eval")["key_parts"]["model"]
    renamed: dict[str, bytes] = {}
    for run in manifest["runs"]:
        old = run["key"]
        run["key_parts"]["model"] = identity
        run["key"] = run_key(run["key_parts"])
        if run["rows"] is not None:
            renamed[f"rows/{run['key']}.jsonl"] = members[run["rows"]["file"]]
            run["rows"]["file"] = f"rows/{run['key']}.jsonl"
        assert old != run["key"]
    return bh.reseal(renamed | {"manifest.json": b""}, manifest)


def test_rescore_passes_a_genuine_bundle_and_names_the_first_example_of_another_model(
    world: World, tmp_path: Path
) -> None:
    from bench.bundle.rescore import TOLERANCE, sample_rows

    result = world.cli(
        "validate",
        str(world.bundles["tiny"]),
        "--rescore",
        "20",
        "--model",
        str(world.model),
        "--tasks-dir",
        str(world.tasks),
        timeout=300,
    )
    assert result.exit_code == 0, result.describe()
    assert "rescored 26 sampled examples (up to 20 per run" in result.stdout  # 20 + 6 attacked
    result = world.cli(
        "validate",
        str(world.bundles["lm"]),
        "--rescore",
        "20",
        "--model",
        str(world.lm),
        "--tasks-dir",
        str(world.tasks),
        timeout=300,
    )
    assert result.exit_code == 0 and "rescored 40 sampled" in result.stdout, result.describe()

    # Another model, same labels, same task: its rows under the first model's name.
    other = build_tiny_model(tmp_path / "other", seed=1, init_range=0.5)
    db = tmp_path / "other.sqlite"
    bh.populate(db, world.tasks / "bundle_nli.yaml", other, attack=False)
    honest = tmp_path / "other.zip"
    assert (
        world.cli(
            "submit",
            "-m",
            "tiny",
            "--db",
            str(db),
            "--out",
            str(honest),
            "--tasks-dir",
            str(world.tasks),
        ).exit_code
        == 0
    )
    genuine = bh.manifest_of(bh.read_zip(world.bundles["tiny"]))
    forged = tmp_path / "forged.zip"
    bh.write_zip(_forge_model(bh.read_zip(honest), genuine), forged)
    # Everything a bundle can prove about itself holds...
    result = world.cli("validate", str(forged), "--tasks-dir", str(world.tasks))
    assert result.exit_code == 0, result.describe()
    # ...until the model it names answers.
    result = world.cli(
        "validate",
        str(forged),
        "--rescore",
        "20",
        "--model",
        str(world.model),
        "--tasks-dir",
        str(world.tasks),
        timeout=300,
    )
    line = assert_one_line_error(result, ["rescore"])
    (run,) = bh.manifest_of(bh.read_zip(forged))["runs"]
    with ResultStore(db, readonly=True) as b, ResultStore(world.db, readonly=True) as a:
        theirs = {r.idx: r for r in b.predictions(b.runs(kinds=["eval"])[0].run_key)}
        mine = {r.idx: r for r in a.predictions(a.runs(kinds=["eval"], model="tiny")[0].run_key)}
    sample = sample_rows(list(theirs.values()), 20, 0, run["key"])
    differing = [
        r
        for r in sample
        if max(abs(x - y) for x, y in zip(r.probs, mine[r.idx].probs, strict=True)) > TOLERANCE
    ]
    first = differing[0]
    assert f"example uid {first.uid} (idx {first.idx}) disagrees with model 'tiny'" in line
    assert f"{len(differing)} of 20 sampled examples disagree" in line
    # The wrong model folder is refused by its hash before anything runs.
    result = world.cli(
        "validate",
        str(forged),
        "--rescore",
        "5",
        "--model",
        str(other),
        "--tasks-dir",
        str(world.tasks),
    )
    assert_one_line_error(result, ["is not the one the bundle names"])
    # A local model is not guessed: the rescore asks for its folder.
    result = world.cli("validate", str(forged), "--rescore", "5", "--tasks-dir", str(world.tasks))
    assert_one_line_error(result, ["pass --model PATH"])
    # Rescored on import: the provenance says so.
    target = tmp_path / "board.sqlite"
    result = world.cli(
        "import",
        str(world.bundles["tiny"]),
        "--rescore",
        "3",
        "--model",
        str(world.model),
        "--db",
        str(target),
        "--tasks-dir",
        str(world.tasks),
        timeout=300,
    )
    assert result.exit_code == 0 and "(rescored)" in result.stdout, result.describe()
    assert {r.provenance for r in _rows(target)} == {"rescored"}
    assert "§§" in world.cli("leaderboard", "--db", str(target)).stdout


# --------------------------------------------------------------------------------------------------
# Done-when 4: interop


def test_model_index_and_lm_eval_exports_carry_the_leaderboard_numbers(
    world: World, tmp_path: Path
) -> None:
    import yaml

    board: dict[str, dict[str, Any]] = {}
    for fmt in ("json",):
        doc = json.loads(world.cli("leaderboard", "--db", str(world.db), "-f", fmt).stdout)
        board = {(r["model"], r["column"]): r for r in doc["rows"]}  # type: ignore[misc]
    assert len(board) == 6
    for model in ("tiny", "lm"):
        index_file, lm_file = tmp_path / f"{model}.yaml", tmp_path / f"{model}.json"
        for kind, out in (("model-index", index_file), ("lm-eval", lm_file)):
            result = world.cli(
                "export",
                kind,
                "-m",
                model,
                "--db",
                str(world.db),
                "--out",
                str(out),
                "--tasks-dir",
                str(world.tasks),
            )
            assert result.exit_code == 0, result.describe()
        index = yaml.safe_load(index_file.read_text(encoding="utf-8"))
        with lm_file.open(encoding="utf-8") as handle:
            lm_eval = json.load(handle)
        (entry,) = index["model-index"]
        assert entry["name"] == model
        columns = {(m, c) for m, c in board if m == model}
        assert {r["dataset"]["name"] for r in entry["results"]} == {c for _, c in columns}
        assert set(lm_eval["results"]) == {c for _, c in columns}
        for result_ in entry["results"]:
            column = result_["dataset"]["name"]
            row = board[model, column]
            name = "accuracy_under_attack" if "@typos" in column else "accuracy"
            (metric,) = [m for m in result_["metrics"] if m["type"] == name]
            assert (metric["value"], metric["args"]["ci_low"], metric["args"]["ci_high"]) == (
                row["value"],
                row["low"],
                row["high"],
            )
            assert metric["args"]["n"] == row["n"] and metric["args"]["confidence"] == 0.95
            short = {"accuracy": "acc"}.get(name, name)
            got = lm_eval["results"][column]
            assert (
                got[f"{short},none"],
                got[f"{short}_ci_low,none"],
                got[f"{short}_ci_high,none"],
            ) == (row["value"], row["low"], row["high"])
            assert lm_eval["n-samples"][column] == {"original": 39, "effective": row["n"]}
            assert lm_eval["versions"][column] == "1"
            assert set(lm_eval["configs"][column]) >= {"task", "num_fewshot", "metric_list"}
        # The bundle carries the same files (and bench export --bundle regenerates them).
        members = bh.read_zip(world.bundles[model])
        assert yaml.safe_load(members["interop/model-index.yaml"]) == index
        assert json.loads(members["interop/lm-eval-results.json"]) == lm_eval
        result = world.cli(
            "export",
            "lm-eval",
            "--bundle",
            str(world.bundles[model]),
            "--tasks-dir",
            str(world.tasks),
        )
        assert json.loads(result.stdout) == lm_eval


# --------------------------------------------------------------------------------------------------
# Schema, canonical JSON, Merkle tree


def test_the_published_schema_is_the_one_the_models_generate(world: World) -> None:
    import jsonschema

    from bench.bundle.manifest import manifest_json_schema

    path = Path(__file__).resolve().parent.parent / "docs" / "bundle-manifest.schema.json"
    published = json.loads(path.read_text(encoding="utf-8"))
    assert published == manifest_json_schema()
    validator = jsonschema.Draft202012Validator(published)
    for bundle in world.bundles.values():
        manifest = bh.manifest_of(bh.read_zip(bundle))
        assert list(validator.iter_errors(manifest)) == []
        manifest["runs"][0]["n_examples"] = "39"
        assert list(validator.iter_errors(manifest))


def test_canonical_json_writes_each_value_one_way() -> None:
    from bench.bundle import canonical

    assert canonical.dumps({"b": 1.0, "a": [1, 0.1, 1e-05, 1e20, "é"]}) == (
        '{"a":[1,0.1,1e-05,1e+20,"é"],"b":1.0}'
    )
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError):
            canonical.dumps({"x": bad})
    for text in ('{"x": NaN}', '{"x": Infinity}', '{"a": 1, "a": 2}', "[" * 100 + "]" * 100):
        with pytest.raises(canonical.JSONFormatError):
            canonical.loads(text)


def test_the_merkle_root_is_rfc6962_over_json_leaves() -> None:
    import hashlib

    from bench.bundle import merkle

    def reference(leaves: list[bytes]) -> bytes:
        if len(leaves) == 1:
            return leaves[0]
        k = 1
        while k * 2 < len(leaves):
            k *= 2
        return hashlib.sha256(b"\x01" + reference(leaves[:k]) + reference(leaves[k:])).digest()

    lines = [json.dumps({"idx": i}).encode() for i in range(40)]
    for n in range(1, 40):
        leaves = [merkle.leaf(line) for line in lines[:n]]
        assert merkle.root(leaves) == reference([bytes.fromhex(h) for h in leaves]).hex()
    assert merkle.root([]) == hashlib.sha256(b"").hexdigest()
    leaves = [merkle.leaf(line) for line in lines]
    for i in range(40):  # any one changed row changes the root
        changed = leaves.copy()
        changed[i] = merkle.leaf(b'{"idx":-1}')
        assert merkle.root(changed) != merkle.root(leaves)


# --------------------------------------------------------------------------------------------------
# Key parts in the store


def test_runs_record_key_parts_and_older_runs_are_rebuilt(world: World, tmp_path: Path) -> None:
    from bench.store import run_key

    db = tmp_path / "copy.sqlite"
    shutil.copy(world.db, db)
    with ResultStore(db, readonly=True) as store:
        runs = store.runs()
        assert len(runs) == 6
        for run in runs:
            parts = store.key_parts(run.run_key)
            assert parts is not None and run_key(parts) == run.run_key
    # A store migrated from schema 2 has no key parts: submit rebuilds them from the records
    # and keeps them only when they hash to the keys.
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM run_key_parts")
    out = tmp_path / "rebuilt.zip"
    for model in ("tiny", "lm"):
        result = world.cli(
            "submit",
            "-m",
            model,
            "--db",
            str(db),
            "--out",
            str(out),
            "--tasks-dir",
            str(world.tasks),
        )
        assert result.exit_code == 0, result.describe()
        assert world.cli("validate", str(out), "--tasks-dir", str(world.tasks)).exit_code == 0
        original = bh.manifest_of(bh.read_zip(world.bundles[model]))["runs"]
        rebuilt = bh.manifest_of(bh.read_zip(out))["runs"]
        assert [r["key_parts"] for r in rebuilt] == [r["key_parts"] for r in original]
    with sqlite3.connect(db) as conn:  # a record whose parts cannot be rebuilt
        conn.execute("UPDATE runs SET seed = 7 WHERE kind = 'eval'")
        conn.execute(
            "UPDATE runs SET config_json = json_set(config_json, '$.limit', 5) WHERE kind='eval'"
        )
    result = world.cli(
        "submit", "-m", "tiny", "--db", str(db), "--out", str(out), "--tasks-dir", str(world.tasks)
    )
    assert_one_line_error(result, ["key cannot be rebuilt"])


# --------------------------------------------------------------------------------------------------
# Command-line refusals


def test_submit_validate_and_import_refuse_in_one_line(world: World, tmp_path: Path) -> None:
    db, tasks = str(world.db), str(world.tasks)
    cases = [
        (
            ["submit", "-m", "nobody", "--db", db, "--out", str(tmp_path / "x.zip")],
            "no completed runs of model 'nobody'",
        ),
        (
            ["submit", "-m", "tiny", "--db", db, "--out", str(tmp_path / "x.tar")],
            "a bundle is a .zip file",
        ),
        (["submit", "-m", "tiny", "--db", db, "--out", str(tmp_path)], "is a directory"),
        (
            [
                "submit",
                "-m",
                "tiny",
                "--db",
                str(tmp_path / "none.sqlite"),
                "--out",
                str(tmp_path / "x.zip"),
            ],
            "does not exist",
        ),
        (
            ["submit", "-m", "tiny", "--db", db, "--out", str(tmp_path / "x.zip"), "--run"],
            "give --task",
        ),
        (
            [
                "submit",
                "-m",
                "tiny",
                "--db",
                db,
                "--out",
                str(tmp_path / "x.zip"),
                "-t",
                "no_such_task",
            ],
            "no_such_task",
        ),
        (["validate", str(tmp_path / "missing.zip")], "does not exist"),
        (["validate", str(tmp_path)], "not a regular file"),
        (
            ["validate", str(world.bundles["tiny"]), "--rescore", "-1"],
            "--rescore must be at least 0",
        ),
        (["validate", str(world.bundles["tiny"]), "--device", "gpu"], "--device"),
        (["validate", str(world.bundles["tiny"])], "not available here"),  # no --tasks-dir
        (["export", "model-index", "--db", db], "--model M"),
        (["export", "lm-eval", "-m", "tiny", "--bundle", str(world.bundles["tiny"])], "--model M"),
    ]
    # A file in a folder that does not exist: named before the bundle is built or validated
    # (writing a file creates no folders, so it would fail only once the work was done).
    missing = tmp_path / "no_folder"
    cases += [
        (
            ["submit", "-m", "tiny", "--db", db, "--out", str(missing / "x.zip"),
             "--tasks-dir", tasks],
            f"--out {missing / 'x.zip'}: folder {missing} does not exist",
        ),
        (
            ["export", "model-index", "-m", "tiny", "--db", db, "-o", str(missing / "x.yaml"),
             "--tasks-dir", tasks],
            f"--out {missing / 'x.yaml'}: folder {missing} does not exist",
        ),
        (
            ["import", str(world.bundles["tiny"]), "--db", str(missing / "b.sqlite"),
             "--tasks-dir", tasks],
            f"--db {missing / 'b.sqlite'}: folder {missing} does not exist",
        ),
    ]  # fmt: skip
    # A task or suite named that the model has no runs of: refused, not a bundle without it.
    out = ["--db", db, "--out", str(tmp_path / "x.zip"), "--tasks-dir", tasks]
    cases += [
        (["submit", "-m", "tiny", *out, "--suite", "quick"], "of model 'tiny' under suite 'quick' in"),
        (["submit", "-m", "tiny", *out, "-t", "bundle_nli", "-s", "typos", "-s", "quick"],
         "under suite 'quick' on bundle_nli"),
        (["submit", "-m", "lm", *out, "-s", "typos"], "of model 'lm' under suite 'typos'"),
        (["submit", "-m", "tiny", *out, "-t", "bundle_nli", "-t", "vader_nyt"],
         "of model 'tiny' on task 'vader_nyt'"),
        (["export", "lm-eval", "-m", "tiny", "--db", db, "--tasks-dir", tasks, "-s", "quick"],
         "under suite 'quick'"),
    ]  # fmt: skip
    for argv, needle in cases:
        assert_one_line_error(run_cli(argv, {"HF_HUB_OFFLINE": "1"}), [needle])
    assert not (tmp_path / "x.zip").exists() and not missing.exists()
    # An invalid bundle among valid ones: nothing is imported.
    bad = tmp_path / "bad.zip"
    bad.write_bytes(world.bundles["tiny"].read_bytes()[:-100])
    target = tmp_path / "board.sqlite"
    result = run_cli(
        ["import", str(world.bundles["lm"]), str(bad), "--db", str(target), "--tasks-dir", tasks]
    )
    assert_one_line_error(result, ["bad.zip: bad.zip is not a readable zip file"])
    assert not target.exists()  # refused before the store was even created


def test_import_still_creates_the_default_stores_folder(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store makes the folder of the default store (results/), so --db's up-front check
    lets that one through; any other store's folder must exist (above)."""
    monkeypatch.chdir(tmp_path)
    argv = ["import", str(world.bundles["tiny"]), "--tasks-dir", str(world.tasks)]
    result = run_cli(argv, {"HF_HUB_OFFLINE": "1", "BENCH_DB": ""})
    assert result.exit_code == 0, result.describe()
    assert (tmp_path / "results" / "bench.sqlite").is_file()


# --------------------------------------------------------------------------------------------------
# Model cards, --run, hostile names, harness versions


def test_submit_run_computes_missing_runs_and_carries_the_model_card(
    world: World, tmp_path: Path
) -> None:
    model = tmp_path / "carded"
    shutil.copytree(world.model, model)
    card = {"base": "tiny", "dev_accuracy": 0.5, "lr": 1e-4, "curve": [float("nan"), 0.25]}
    (model / "bench_model_card.json").write_text(json.dumps(card), encoding="utf-8")
    (model / "README.md").write_text("# carded\n\nA tiny model.\n", encoding="utf-8")
    db, out = tmp_path / "fresh.sqlite", tmp_path / "carded.zip"
    result = world.cli(
        "submit", "-m", f"carded={model}", "-t", str(world.tasks / "bundle_nli.yaml"), "--run",
        "--suite", "typos", "--db", str(db), "--out", str(out), "--no-progress", timeout=300,
    )  # fmt: skip
    assert result.exit_code == 0, result.describe()
    members = bh.read_zip(out)
    manifest = bh.manifest_of(members)
    assert {r["kind"] for r in manifest["runs"]} == {"eval", "attack", "suite"}
    assert manifest["model"]["card"] == {**card, "curve": [None, 0.25]}  # NaN has no JSON
    assert manifest["model"]["card_file"] == "model/README.md"
    assert members["model/README.md"] == b"# carded\n\nA tiny model.\n"
    assert (
        manifest["model"]["hash"]
        == bh.manifest_of(bh.read_zip(world.bundles["tiny"]))["model"]["hash"]
    )
    assert (
        world.cli("validate", str(out), "-t", str(world.tasks / "bundle_nli.yaml")).exit_code == 0
    )
    # A changed card is a changed file.
    members["model/README.md"] = b"# carded\n\nThe best model ever.\n"
    bh.write_zip(members, tmp_path / "recarded.zip")
    result = world.cli("validate", str(tmp_path / "recarded.zip"), "--tasks-dir", str(world.tasks))
    assert_one_line_error(result, ["model/README.md: its SHA-256 is not the one in the manifest"])


def test_hostile_names_are_escaped_where_they_are_rendered(world: World, tmp_path: Path) -> None:
    members = bh.read_zip(world.bundles["tiny"])
    manifest = bh.manifest_of(members)
    name = "<script>alert('x')</script>|\\textbf{x}"
    manifest["model"]["name"] = name
    path = tmp_path / "hostile.zip"
    bh.write_zip(bh.reseal(members, manifest), path)
    target = tmp_path / "board.sqlite"
    result = world.cli("import", str(path), "--db", str(target), "--tasks-dir", str(world.tasks))
    assert result.exit_code == 0, result.describe()
    page = world.cli("leaderboard", "--db", str(target), "-f", "html").stdout
    assert "<script>" not in page and "&lt;script&gt;" in page
    markdown = world.cli("leaderboard", "--db", str(target)).stdout
    assert "\\<script>" in markdown and "\\|" in markdown
    latex = world.cli("leaderboard", "--db", str(target), "-f", "latex").stdout
    assert "\\textbackslash{}textbf" in latex and "\\S{}" in latex
    shown = json.loads(world.cli("runs", "show", manifest["runs"][0]["key"][:12], "--db",
                                 str(target)).stdout)  # fmt: skip
    assert shown["provenance"]["source"] == "imported" and shown["names"] == [name]
    assert shown["provenance"]["bundle_name"] == "hostile.zip"
    assert shown["key_parts"] == manifest["runs"][0]["key_parts"]


def test_harness_versions_are_checked() -> None:
    from bench._version import __version__
    from bench.bundle.validate import harness_problem

    major, minor, patch = (int(x) for x in __version__.split(".")[:3])
    assert harness_problem(__version__, "b.zip") is None
    assert harness_problem(f"{major}.{minor}.{patch + 1}", "b.zip") is not None  # newer
    newer = harness_problem(f"{major + 1}.0.0", "b.zip")
    assert newer is not None and "newer than this harness" in newer
    if major == 0 and minor > 0:  # 0.x: another minor version is another format
        older = harness_problem(f"0.{minor - 1}.9", "b.zip")
        assert older is not None and "reads bundles of" in older
    if patch > 0:
        assert harness_problem(f"{major}.{minor}.{patch - 1}", "b.zip") is None
    assert "not a version" in str(harness_problem("banana", "b.zip"))


@pytest.mark.slow
def test_the_default_models_leaderboard_round_trips(
    default_models: dict[str, Path], tmp_path: Path
) -> None:
    """The default models' leaderboard (clean, under the typos suite, and the default causal LM
    prompted) through bundles into an empty store: the same cells. The NLI model's part runs
    where its data asset (BIG-bench) can be fetched."""
    import bench
    from bench.attacks.specs import AttackConfig

    db = tmp_path / "default.sqlite"
    sentiment = default_models["minilm-sentiment"]
    bench.run(["vader_tweets"], [f"minilm-sentiment={sentiment}"], db=db, suites=["typos"],
              attack_config=AttackConfig(limit=10, max_length=64))  # fmt: skip
    bench.prompt(["smollm2"], ["vader_tweets"], shots=[0], templates=[1], db=db)
    names = ["minilm-sentiment", "smollm2-135m-instruct"]
    expected = {"vader_tweets", "vader_tweets@typos", "vader_tweets@0shot"}
    if "minilm-nli" not in default_models.missing:  # type: ignore[attr-defined]
        nli = default_models["minilm-nli"]
        tasks = ["analytic_entailment", "epistemic_reasoning"]
        bench.run(tasks, [f"minilm-nli={nli}"], db=db, suites=["typos"],
                  attack_config=AttackConfig(limit=10, max_length=128))  # fmt: skip
        bench.prompt(["smollm2"], ["analytic_entailment"], shots=[0], templates=[1], db=db)
        names.append("minilm-nli")
        expected |= {
            "analytic_entailment",
            "epistemic_reasoning@typos",
            "analytic_entailment@0shot",
        }
    target = tmp_path / "board.sqlite"
    for name in names:
        out = tmp_path / f"{name}.zip"
        result = run_cli(["submit", "-m", name, "--db", str(db), "--out", str(out)])
        assert result.exit_code == 0, result.describe()
        result = run_cli(["import", str(out), "--db", str(target)], timeout=120)
        assert result.exit_code == 0, result.describe()
    source, imported = _rows(db), _rows(target)
    assert {r.label for r in source} >= expected
    assert _cells(imported) == _cells(source)
    from bench.report.leaderboard import render

    plain = [dataclasses.replace(r, provenance=None) for r in imported]
    assert render(plain, "markdown") == render(source, "markdown")


def test_a_changed_row_is_located_by_run_and_example(world: World, tmp_path: Path) -> None:
    members = bh.read_zip(world.bundles["lm"])
    manifest = bh.manifest_of(members)
    run = next(r for r in manifest["runs"] if r["kind"] == "prompt")
    lines = members[run["rows"]["file"]].decode().splitlines()
    row = json.loads(lines[7])
    row["prompt"] = row["prompt"].replace("Answer", "Answer honestly")
    lines[7] = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    members[run["rows"]["file"]] = "".join(line + "\n" for line in lines).encode()
    path = tmp_path / "edited.zip"
    bh.write_zip(members, path)
    result = world.cli("validate", str(path), "--tasks-dir", str(world.tasks))
    assert result.exit_code == 2
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"error: run {run['key'][:12]} ('bundle_nli@{run['column']}')")
    assert f"the row of example idx {row['idx']} (uid '{row['uid']}') (line 8) was changed" in first
    # Re-sealed, the hashes agree, and the local task says which prompt it would not build.
    bh.write_zip(bh.reseal(members), path)
    result = world.cli("validate", str(path), "--tasks-dir", str(world.tasks))
    line = assert_one_line_error(result, ["its prompt is not the one the local task builds"])
    assert f"example uid '{row['uid']}' (idx {row['idx']})" in line


def test_a_rows_file_that_cannot_be_parsed_is_summarised_and_named_once(
    world: World, tmp_path: Path
) -> None:
    """A rows line cut short: the summary still counts the rows the bundle declares (not only
    those of runs whose rows could be read), and the changed row is named by its line once."""
    members = bh.read_zip(world.bundles["tiny"])
    manifest = bh.manifest_of(members)
    run = next(r for r in manifest["runs"] if r["kind"] == "eval")
    lines = members[run["rows"]["file"]].decode().splitlines()
    lines[4] = lines[4][:-5]
    members[run["rows"]["file"]] = "".join(line + "\n" for line in lines).encode()
    path = tmp_path / "cut.zip"
    bh.write_zip(members, path)
    result = world.cli("validate", str(path), "--tasks-dir", str(world.tasks))
    assert result.exit_code == 2, result.describe()
    declared = manifest["merkle"]["leaves"]
    assert declared > run["rows"]["count"]
    summary = f"cut.zip: model 'tiny' (local {manifest['model']['hash'][:12]}), "
    summary += f"{len(manifest['runs'])} runs, {declared} rows, Merkle root"
    assert summary in result.stdout, result.describe()
    assert "line 5: not JSON" in result.stderr
    assert "the row at line 5 was changed after the bundle was sealed" in result.stderr
    assert result.stderr.count("line 5") == 2, result.describe()  # the parse error, the change


def test_rescore_keeps_a_backend_the_user_names(world: World) -> None:
    """--model onnx:PATH is loaded as ONNX (so a folder of another backend is refused as what it
    is); a model without a backend prefix runs with the bundle's backend."""
    from bench.bundle.manifest import BundleManifest
    from bench.bundle.rescore import model_spec_for

    manifest = BundleManifest.model_validate(bh.manifest_of(bh.read_zip(world.bundles["tiny"])))
    assert manifest.model.backend == "hf"
    named = model_spec_for(manifest, f"onnx:{world.model}")
    assert (named.backend, named.path, named.name) == ("onnx", str(world.model), "tiny")
    plain = model_spec_for(manifest, str(world.model))
    assert (plain.backend, plain.path, plain.name) == ("hf", str(world.model), "tiny")
    assert model_spec_for(manifest, f"hf:{world.model}").backend == "hf"


def test_rescore_recomputes_a_bfloat16_run_in_the_batches_it_was_computed_in(
    world: World, tmp_path: Path
) -> None:
    """In bfloat16 an example's loglikelihoods move with the examples padded beside it: sampled
    examples recomputed alone disagreed with an honest bundle. They are recomputed in their own
    batches, which give the stored rows to the bit."""
    import bench

    db = tmp_path / "bf16.sqlite"
    task = world.tasks / f"{bh.TASK_NAME}.yaml"
    bench.prompt([f"lm={world.lm}"], [task], shots=[0], db=db, device="cpu",
                           dtype="bfloat16", batch_size=4)  # fmt: skip
    out = tmp_path / "bf16.zip"
    submitted = world.cli("submit", "-m", "lm", "--db", str(db), "--out", str(out),
                          "--tasks-dir", str(world.tasks))  # fmt: skip
    assert submitted.exit_code == 0, submitted.describe()
    result = world.cli("validate", str(out), "--rescore", "5", "--model", str(world.lm),
                       "--tasks-dir", str(world.tasks), timeout=300)  # fmt: skip
    assert result.exit_code == 0 and "all agree" in result.stdout, result.describe()

    # What the rescore computes for one sampled example: its whole unit (a chunk of questions,
    # batched as a fresh run batches it), whose rows equal the submitter's to the bit.
    from bench.bundle.rescore import _run_units_holding
    from bench.engine import Engine
    from bench.prompt_runner import PromptRunner
    from bench.specs import ModelSpec, PromptConfig
    from bench.store import ResultStore
    from bench.tasks import load_task_data, load_task_file

    data = load_task_data(load_task_file(task), task.parent)
    with ResultStore(db) as stored, ResultStore(tmp_path / "units.sqlite") as store:
        engine = Engine(store, progress=False)
        config = PromptConfig(device="cpu", dtype="bfloat16", batch_size=4)
        runner = PromptRunner(store, config, progress=False, engine=engine)
        (planned,) = runner.plan(data, [0], [0])
        plan = runner.run_plan(planned, ModelSpec(name="lm", path=str(world.lm)))
        sampled = plan.examples[len(plan.examples) // 2].idx
        _run_units_holding(engine, plan, {sampled})
        redone = store.rows(plan.kind.table, plan.key)
        original = {r.idx: r for r in stored.rows(plan.kind.table, plan.key)}
    assert sampled in {r.idx for r in redone} and 1 < len(redone) < len(plan.examples)
    assert all(r == original[r.idx] for r in redone)

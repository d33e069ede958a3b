"""Submission bundles, fuzzed through ``bench validate`` (issue 14).

Two genuine bundles (the tiny classifier evaluated and attacked; the tiny Llama prompted) are
tampered with or damaged in every way the issue lists: one flipped prediction, a dropped, a
repeated or an extra example, a changed task hash, a changed metric, a truncated zip, zip bombs
(a declared size, a real ratio, too many members, a lying header), members that escape the
folder, wrong types in the manifest or a row, an unknown schema version, a manifest that is not
JSON; rows are changed both naively (the hashes then disagree) and by a careful forger who
re-seals every hash and root (the deeper checks must then catch it). Every tampered bundle
is refused with exit code 2, one or more lines each starting ``error:``, the first naming what
is wrong, never a traceback; every untampered one (re-packed in another member order and
compression) is accepted.
"""

from __future__ import annotations

import io
import json
import random
import stat
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bundle_helpers as bh
import pytest
from hypothesis import given
from hypothesis import strategies as st
from lm_helpers import build_tiny_llama

from .conftest import COUNTS
from .fuzzkit import CliResult, fuzz_env, fuzz_settings, run_cli

MAX_LINE = 300


@dataclass(frozen=True)
class Genuine:
    tasks: Path
    bundles: dict[str, dict[str, bytes]]  # name -> members
    bombs: dict[str, bytes]  # prebuilt hostile zips (expensive to make once per case)


@pytest.fixture(scope="module")
def genuine(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, torch_one_thread: None
) -> Genuine:
    root = tmp_path_factory.mktemp("fuzz-bundles")
    task = bh.write_task(root / "tasks", n=30)
    db = root / "store.sqlite"
    bh.populate(db, task, tiny_model_dir, lm_dir=build_tiny_llama(root / "llama"), attack_limit=4)
    bundles = {name: bh.read_zip(out) for name, out in bh.submit_both(db, task, root).items()}
    return Genuine(task.parent, bundles, _bombs(bundles["tiny"]))


# --------------------------------------------------------------------------------------------------
# Hostile zips that are built once


def _central_entry(data: bytes, name: str) -> int:
    """Offset of ``name``'s central directory entry."""
    at = 0
    while True:
        at = data.index(b"PK\x01\x02", at)
        size = struct.unpack("<H", data[at + 28 : at + 30])[0]
        if data[at + 46 : at + 46 + size] == name.encode():
            return at
        at += 4


def patch_central(data: bytes, name: str, offset: int, fmt: str, value: int) -> bytes:
    """``data`` with one field of ``name``'s central directory entry set to ``value``."""
    at = _central_entry(data, name) + offset
    field = struct.pack(fmt, value)
    return data[:at] + field + data[at + len(field) :]


def _bombs(members: dict[str, bytes]) -> dict[str, bytes]:
    rows_name = next(n for n in members if n.endswith(".jsonl"))
    genuine = bh.write_zip(members)
    ratio = dict(members)
    ratio[rows_name] = b"\n" * (64 << 20)  # 64 MiB that deflate to about 64 KiB
    many = [("manifest.json", members["manifest.json"])] + [
        (f"rows/{i:024x}.leaves", b"") for i in range(10_001)
    ]
    return {
        # A member declared at 3 GiB (a true bomb declares its size; its ratio is checked too).
        "declared_3gib": patch_central(genuine, rows_name, 24, "<I", 3 << 30),
        "declared_total": _many_large(members),
        "real_ratio": bh.write_zip(ratio),
        "too_many_members": bh.write_zip(many, compression=zipfile.ZIP_STORED),
        # A header that declares less than the member holds: reading stops one byte past it.
        "lying_header": patch_central(genuine, rows_name, 24, "<I", 10),
    }


def _many_large(members: dict[str, bytes]) -> bytes:
    """Members that each declare 900 MiB: under the per-member limit, over the total."""
    data = bh.write_zip(members)
    for name in [n for n in members if n.startswith("rows/")][:3]:
        data = patch_central(data, name, 24, "<I", 900 << 20)
    return data


# --------------------------------------------------------------------------------------------------
# Tampering


@dataclass(frozen=True)
class Tampered:
    kind: str
    data: bytes
    mentions: tuple[str, ...]  # the first error line must contain one of these
    accept: bool = False


def _runs(members: dict[str, bytes], kinds: tuple[str, ...]) -> list[dict[str, Any]]:
    return [r for r in bh.manifest_of(members)["runs"] if r["kind"] in kinds and r["rows"]]


def _lines(members: dict[str, bytes], run: dict[str, Any]) -> list[str]:
    return members[run["rows"]["file"]].decode().splitlines()


def _put_lines(
    members: dict[str, bytes], run: dict[str, Any], lines: list[str]
) -> dict[str, bytes]:
    out = dict(members)
    out[run["rows"]["file"]] = "".join(line + "\n" for line in lines).encode()
    return out


def _dump(row: dict[str, Any]) -> str:
    from bench.bundle import canonical

    return canonical.dumps(row)


def _finish(
    kind: str,
    members: dict[str, bytes],
    sealed: bool,
    naive: tuple[str, ...],
    deep: tuple[str, ...],
) -> Tampered:
    if sealed:
        return Tampered(f"{kind} (re-sealed)", bh.write_zip(bh.reseal(members)), deep)
    return Tampered(kind, bh.write_zip(members), naive)


CHANGED = ("changed after the bundle was sealed",)
ADDED = ("added or repeated after the bundle was sealed",)


def flip_prediction(d: st.DataObject, members: dict[str, bytes]) -> Tampered:
    run = d.draw(st.sampled_from(_runs(members, ("eval", "prompt", "attack"))))
    lines = _lines(members, run)
    i = d.draw(st.integers(0, len(lines) - 1))
    row = json.loads(lines[i])
    consistent = d.draw(st.booleans())
    if run["kind"] == "eval":
        k = len(row["probs"])
        if consistent:  # probabilities permuted too, so the prediction is their argmax
            new = row["label"] if row["pred"] != row["label"] else (row["label"] + 1) % k
            probs = row["probs"][:]
            probs[new], probs[row["pred"]] = probs[row["pred"]], probs[new]
            row.update(pred=new, probs=probs)
            deep: tuple[str, ...] = ("accuracy declared",)
        else:
            row["pred"] = (row["pred"] + 1) % k
            deep = ("is not its most probable label",)
    elif run["kind"] == "prompt":
        k = len(row["scores"])
        if consistent:  # scores permuted and correctness updated: only the metrics can tell
            new = row["label"] if row["pred"] != row["label"] else (row["label"] + 1) % k
            scores = row["scores"][:]
            scores[new], scores[row["pred"]] = scores[row["pred"]], scores[new]
            row.update(pred=new, scores=scores, correct=new == row["label"])
            deep = ("accuracy declared",)
        else:
            row["pred"] = (row["pred"] + 1) % k
            deep = ("against its own answer", "is not its highest-scored choice")
    else:
        row["original_pred"] = (row["original_pred"] + 1) % len(row["original_scores"])
        deep = ("a prediction is not its most probable label",)
    lines[i] = _dump(row)
    return _finish(
        "flipped prediction", _put_lines(members, run, lines), d.draw(st.booleans()), CHANGED, deep
    )


def drop_example(d: st.DataObject, members: dict[str, bytes]) -> Tampered:
    run = d.draw(st.sampled_from(_runs(members, ("eval", "prompt", "attack"))))
    lines = _lines(members, run)
    del lines[d.draw(st.integers(0, len(lines) - 1))]
    return _finish(
        "dropped example",
        _put_lines(members, run, lines),
        d.draw(st.booleans()),
        ("gone from its rows file",),
        ("is missing",),
    )


def duplicate_example(d: st.DataObject, members: dict[str, bytes]) -> Tampered:
    run = d.draw(st.sampled_from(_runs(members, ("eval", "prompt", "attack"))))
    lines = _lines(members, run)
    i = d.draw(st.integers(0, len(lines) - 1))
    lines.insert(i + 1, lines[i])
    return _finish(
        "duplicated example",
        _put_lines(members, run, lines),
        d.draw(st.booleans()),
        ADDED,
        ("appears 2 times",),
    )


def extra_uid(d: st.DataObject, members: dict[str, bytes]) -> Tampered:
    run = d.draw(st.sampled_from(_runs(members, ("eval", "prompt", "attack"))))
    lines = _lines(members, run)
    row = json.loads(lines[d.draw(st.integers(0, len(lines) - 1))])
    row["uid"] = d.draw(st.text("0123456789abcdef", min_size=16, max_size=16))
    row["idx"] = d.draw(st.integers(len(lines), len(lines) + 1000))
    lines.append(_dump(row))
    return _finish(
        "extra uid",
        _put_lines(members, run, lines),
        d.draw(st.booleans()),
        ADDED,
        ("is not in split",),
    )


def changed_task_hash(d: st.DataObject, members: dict[str, bytes]) -> Tampered:
    manifest = bh.manifest_of(members)
    other = d.draw(st.text("0123456789abcdef", min_size=64, max_size=64))
    manifest["tasks"][0]["data_hash"] = other
    if d.draw(st.booleans()):  # the runs say the same: only the local task can tell
        for run in manifest["runs"]:
            run["task_hash"] = other
    out = dict(members)
    out["manifest.json"] = (
        json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
    ).encode()
    return Tampered("changed task hash", bh.write_zip(out), ("data hash", "task hash"))


def changed_metric(d: st.DataObject, members: dict[str, bytes]) -> Tampered:
    manifest = bh.manifest_of(members)
    run = d.draw(st.sampled_from(manifest["runs"]))
    name = d.draw(st.sampled_from(sorted(run["metrics"])))
    metric = run["metrics"][name]
    part = d.draw(st.sampled_from([p for p in ("value", "low", "high") if metric[p] is not None]))
    delta = d.draw(st.floats(1e-3, 10.0)) * d.draw(st.sampled_from([-1, 1]))
    metric[part] = metric[part] + delta
    sealed = d.draw(st.booleans())  # re-sealed: the interop files carry the forged number too
    if sealed:
        return Tampered(
            "changed metric (re-sealed)",
            bh.write_zip(bh.reseal(members, manifest)),
            (f"{name} declared",),
        )
    out = dict(members)
    out["manifest.json"] = (
        json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
    ).encode()
    return Tampered("changed metric", bh.write_zip(out), (f"{name} declared",))


def truncated(d: st.DataObject, members: dict[str, bytes]) -> Tampered:
    data = bh.write_zip(members)
    return Tampered(
        "truncated zip", data[: d.draw(st.integers(0, len(data) - 1))], ("not a readable zip",)
    )


def zip_bomb(d: st.DataObject, members: dict[str, bytes], bombs: dict[str, bytes]) -> Tampered:
    name = d.draw(st.sampled_from(sorted(bombs)))
    # A header declaring less than the member holds: zipfile stops there and the CRC fails.
    return Tampered(
        f"zip bomb ({name})", bombs[name], ("refused before extraction", "not a readable zip")
    )


TRAVERSALS = ["../", "../../etc/", "/", "/tmp/", "rows/../../", "C:/", "rows\\..\\", "a/../../"]


def path_traversal(d: st.DataObject, members: dict[str, bytes]) -> Tampered:
    name = d.draw(st.sampled_from(TRAVERSALS)) + d.draw(
        st.sampled_from(["evil.txt", "manifest.json", ".bashrc", "rows/x.jsonl"])
    )
    items = list(members.items())
    items.insert(d.draw(st.integers(0, len(items))), (name, b"owned"))
    return Tampered(
        "path traversal", bh.write_zip(items), ("path traversal", "absolute path", "backslash")
    )


# (where, bad values) in the manifest; ``*`` is a run index drawn.
MANIFEST_TYPES: list[tuple[tuple[Any, ...], list[Any]]] = [
    (("runs", "*", "n_examples"), ["39", 39.5, None, True, [39]]),
    (("runs", "*", "partial"), ["no", 0, None]),
    (("runs", "*", "key"), [5, None, "k" * 24, ""]),
    (("runs", "*", "metrics"), [[], "accuracy", 0.5]),
    (("runs", "*", "members"), ["x", {}, [1]]),
    (("runs", "*", "config"), [[], "eval", None]),
    (("runs", "*", "metric_settings", "n_bootstrap"), ["1000", 1000.0, -1]),
    (("runs", "*", "split"), ["validation", 1]),
    (("runs", "*", "created_at"), ["yesterday", None]),
    (("model", "hash"), [5, None, ""]),
    (("model", "kind"), ["folder", 1]),
    (("tasks", 0, "splits"), [[1, 2], {"test": "39"}, {"test": -1}]),
    (("tasks", 0, "data_hash"), ["abc", 1]),
    (("files", 0, "bytes"), ["12", -1, 1.5]),
    (("files", 0, "path"), ["../x", "/etc/passwd", 1]),
    (("merkle", "root"), ["xyz", None]),
    (("merkle", "algorithm"), ["md5"]),
    (("harness",), ["nlp-bench", [], {"name": "other", "version": "0.1.0"}]),
    (("runs",), [{}, "runs", None]),
]


def _set(data: Any, path: tuple[Any, ...], value: Any) -> None:
    for step in path[:-1]:
        data = data[step]
    data[path[-1]] = value


ROW_TYPES: list[tuple[str, list[Any]]] = [
    ("idx", ["1", 1.0, -1, None]),
    ("uid", [5, None, ["a"]]),
    ("label", ["1", 1.5, True]),
]


def wrong_types(d: st.DataObject, members: dict[str, bytes]) -> Tampered:
    if d.draw(st.booleans()):
        manifest = bh.manifest_of(members)
        where, values = d.draw(st.sampled_from(MANIFEST_TYPES))
        path = tuple(
            d.draw(st.integers(0, len(manifest["runs"]) - 1)) if p == "*" else p for p in where
        )
        _set(manifest, path, d.draw(st.sampled_from(values)))
        out = dict(members)
        out["manifest.json"] = (
            json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
        ).encode()
        return Tampered("wrong type in the manifest", bh.write_zip(out), ("manifest.json: field",))
    run = d.draw(st.sampled_from(_runs(members, ("eval", "prompt", "attack"))))
    lines = _lines(members, run)
    i = d.draw(st.integers(0, len(lines) - 1))
    row = json.loads(lines[i])
    change = d.draw(st.sampled_from(["field", "extra", "missing", "integer float"]))
    if change == "field":
        name, values = d.draw(st.sampled_from(ROW_TYPES))
        row[name] = d.draw(st.sampled_from(values))
    elif change == "extra":
        row["injected"] = "x"
    elif change == "missing":
        del row[d.draw(st.sampled_from(sorted(row)))]
    else:
        floats = [
            k for k, v in row.items() if isinstance(v, list) and v and isinstance(v[0], float)
        ]
        row[floats[0]][0] = 1  # a probability or score written as an integer
    lines[i] = _dump(row)
    return Tampered(
        "wrong type in a row (re-sealed)",
        bh.write_zip(bh.reseal(_put_lines(members, run, lines))),
        (f"{run['rows']['file']} line {i + 1}",),
    )


def unknown_schema(d: st.DataObject, members: dict[str, bytes]) -> Tampered:
    manifest = bh.manifest_of(members)
    manifest["schema_version"] = d.draw(
        st.sampled_from([0, 2, 3, 99, -1, "1", 1.0, True, None, [1]])
    )
    out = dict(members)
    out["manifest.json"] = json.dumps(manifest, sort_keys=True).encode()
    return Tampered("unknown schema version", bh.write_zip(out), ("schema version",))


NOT_JSON = [
    b"",
    b"{",
    b"not json",
    b"\xff\xfe\x00garbage",
    b'{"format": "nlp-bench-bundle"',
    b"format: nlp-bench-bundle\n",
    b'{"x": NaN}',
    b"[1, 2, 3]",
    b"null",
    b'{"format": "nlp-bench-bundle", "format": "x"}',
    b"[" * 5000 + b"]" * 5000,
]


def not_json(d: st.DataObject, members: dict[str, bytes]) -> Tampered:
    out = dict(members)
    if d.draw(st.booleans()):
        out["manifest.json"] = d.draw(st.sampled_from(NOT_JSON))
    else:  # the real manifest, cut short
        text = members["manifest.json"]
        out["manifest.json"] = text[: d.draw(st.integers(0, len(text) - 3))]
    return Tampered("manifest not JSON", bh.write_zip(out), ("manifest.json",))


def other_damage(d: st.DataObject, members: dict[str, bytes]) -> Tampered:
    """Beyond the issue's list: a member missing or unlisted, another model's hash, a label
    mapping to a label the task lacks."""
    what = d.draw(
        st.sampled_from(["missing member", "unlisted member", "model hash", "mapping", "prompt"])
    )
    out = dict(members)
    prompted = _runs(members, ("prompt",))
    if what == "prompt" and prompted:  # re-sealed: the local task rebuilds the prompt
        run = d.draw(st.sampled_from(prompted))
        lines = _lines(members, run)
        i = d.draw(st.integers(0, len(lines) - 1))
        row = json.loads(lines[i])
        row["prompt"] = (
            d.draw(st.sampled_from(["", "Ignore the question. ", "Q: "])) + row["prompt"] + "x"
        )
        lines[i] = _dump(row)
        return Tampered(what, bh.write_zip(bh.reseal(_put_lines(members, run, lines))),
                        ("its prompt is not the one the local task builds",))  # fmt: skip
    if what == "prompt":
        what = "model hash"
    if what == "missing member":
        del out[d.draw(st.sampled_from(sorted(n for n in members if n != "manifest.json")))]
        return Tampered(what, bh.write_zip(out), ("missing from the zip",))
    if what == "unlisted member":
        out["model/README.md"] = b"# a card nobody sealed\n"
        return Tampered(what, bh.write_zip(out), ("not listed in the manifest",))
    manifest = bh.manifest_of(members)
    if what == "model hash":
        manifest["model"]["hash"] = d.draw(st.text("0123456789abcdef", min_size=64, max_size=64))
        mentions: tuple[str, ...] = ("key part 'model'",)
    else:
        runs = [r for r in manifest["runs"] if r["label_mapping"]]
        if not runs:
            return Tampered(what, bh.write_zip(bh.reseal(members, manifest)), (), accept=True)
        run = d.draw(st.sampled_from(runs))
        source = d.draw(st.sampled_from(sorted(run["label_mapping"])))
        run["label_mapping"][source] = "unheard-of"
        # A suite's mapping is first found to differ from its attacks'.
        mentions = ("not a task label", "its label mapping is not its member run")
    return Tampered(what, bh.write_zip(bh.reseal(members, manifest)), mentions)


def untampered(d: st.DataObject, members: dict[str, bytes]) -> Tampered:
    """The same members re-packed: another order, another compression (deflate at another
    level, stored, bzip2, lzma). Must be accepted."""
    items = d.draw(st.permutations(sorted(members.items())))
    compression = d.draw(
        st.sampled_from(
            [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]
        )
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(
        buffer, "w", compression=compression, compresslevel=d.draw(st.sampled_from([None, 1, 9]))
    ) as zf:
        for name, data in items:
            zf.writestr(name, data)
    return Tampered("untampered (re-packed)", buffer.getvalue(), (), accept=True)


TAMPERS: list[Callable[..., Tampered]] = [
    flip_prediction,
    drop_example,
    duplicate_example,
    extra_uid,
    changed_task_hash,
    changed_metric,
    truncated,
    zip_bomb,
    path_traversal,
    wrong_types,
    unknown_schema,
    not_json,
    other_damage,
]


def check_contract(result: CliResult, case: Tampered) -> None:
    """Refused: exit 2, every stderr line ``error: ...`` (short), the first naming what is
    wrong, no traceback. Accepted: exit 0, ``valid``."""
    assert "Traceback" not in result.stderr, f"{case.kind}\n{result.describe()}"
    if case.accept:
        assert result.exit_code == 0, f"{case.kind}\n{result.describe()}"
        assert result.stdout.rstrip().endswith("valid"), result.describe()
        return
    assert result.exit_code == 2, f"{case.kind}\n{result.describe()}"
    lines = result.stderr.splitlines()
    assert lines, f"{case.kind}\n{result.describe()}"
    for line in lines:
        assert line.startswith("error: ") and len(line) < MAX_LINE, f"{case.kind}: {line!r}"
    assert any(m in lines[0] for m in case.mentions), (
        f"{case.kind}: the first line names none of {list(case.mentions)}\n{result.describe()}"
    )


def test_tampered_and_malformed_bundles_are_refused_and_genuine_ones_accepted(
    genuine: Genuine, tmp_path: Path
) -> None:
    counts: dict[str, int] = {}
    attempts: list[None] = []

    @fuzz_settings(400)
    @given(st.data())
    def check(d: st.DataObject) -> None:
        base = d.draw(st.sampled_from(sorted(genuine.bundles)))
        members = genuine.bundles[base]
        if d.draw(st.integers(0, 4)) == 0:  # about one case in five is genuine
            case = untampered(d, members)
        else:
            tamper = d.draw(st.sampled_from(TAMPERS))
            bombs = {"bombs": genuine.bombs} if tamper is zip_bomb else {}
            case = tamper(d, members, **bombs)
        # Numbered by attempt: Hypothesis replays a failing case, and it must not meet its
        # first attempt's folder.
        attempts.append(None)
        folder = tmp_path / f"case-{len(attempts)}"
        folder.mkdir()
        path = folder / f"{base}.zip"
        path.write_bytes(case.data)
        result = run_cli(
            ["validate", str(path), "--tasks-dir", str(genuine.tasks)], fuzz_env(folder)
        )
        check_contract(result, case)
        counts[case.kind.split(" (")[0] if not case.accept else "untampered"] = (
            counts.get(case.kind.split(" (")[0] if not case.accept else "untampered", 0) + 1
        )

    check()
    refused = sum(v for k, v in counts.items() if k != "untampered")
    for kind, n in counts.items():
        COUNTS[f"bundle {kind}"] += n
    assert refused >= 300, counts
    assert counts.get("untampered", 0) >= 20, counts
    for kind in (
        "flipped prediction",
        "dropped example",
        "duplicated example",
        "extra uid",
        "changed task hash",
        "changed metric",
        "truncated zip",
        "zip bomb",
        "path traversal",
        "unknown schema version",
        "manifest not JSON",
    ):
        assert counts.get(kind, 0) >= 5, (kind, counts)
    assert counts.get("wrong type in the manifest", 0) + counts.get("wrong type in a row", 0) >= 5


# --------------------------------------------------------------------------------------------------
# Hand-made hostile zips


def _with_info(members: dict[str, bytes], name: str, data: bytes, **attrs: Any) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for member, content in members.items():
            zf.writestr(member, content)
        info = zipfile.ZipInfo(name)
        for key, value in attrs.items():
            setattr(info, key, value)
        zf.writestr(info, data)
    return buffer.getvalue()


def test_hand_made_hostile_zips(genuine: Genuine, tmp_path: Path) -> None:
    members = genuine.bundles["tiny"]
    rows_name = next(n for n in members if n.endswith(".jsonl"))
    others = {k: v for k, v in members.items() if k != rows_name}
    genuine_zip = bh.write_zip(members)
    corrupt = bytearray(genuine_zip)
    corrupt[len(corrupt) // 3] ^= 0xFF  # inside some member's compressed data
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name it writes
        duplicate = bh.write_zip([*members.items(), ("manifest.json", members["manifest.json"])])
    cases = {
        "not a zip": (b"PK\x03\x04 but nothing else", "not a readable zip"),
        "empty file": (b"", "not a readable zip"),
        "no manifest": (bh.write_zip({rows_name: members[rows_name]}), "no manifest.json"),
        "symlink": (
            _with_info(
                others, rows_name, b"/etc/passwd", external_attr=(stat.S_IFLNK | 0o777) << 16
            ),
            "symbolic link",
        ),
        "directory entry": (_with_info(members, "rows/", b""), "unexpected member"),
        "unknown member": (_with_info(members, "evil.py", b"import os"), "unexpected member"),
        "pickle member": (_with_info(members, "rows/model.pkl", b"\x80\x04."), "unexpected member"),
        "NUL in a name": (_with_info(members, "rows/a\x00b.jsonl", b""), "unexpected member"),
        "duplicate name": (duplicate, "appears twice"),
        "encrypted flag": (patch_central(genuine_zip, rows_name, 8, "<H", 0x1), "encrypted"),
        "damaged data": (bytes(corrupt), "not a readable zip|cannot be read"),
    }
    for i, (name, (data, needle)) in enumerate(cases.items()):
        folder = tmp_path / f"hand-{i}"
        folder.mkdir()
        (folder / "b.zip").write_bytes(data)
        result = run_cli(
            ["validate", str(folder / "b.zip"), "--tasks-dir", str(genuine.tasks)], fuzz_env(folder)
        )
        check_contract(result, Tampered(name, data, tuple(needle.split("|"))))
        COUNTS["bundles (hand-made)"] += 1
    # A genuine one passes through the same runner.
    (tmp_path / "ok.zip").write_bytes(genuine_zip)
    result = run_cli(["validate", str(tmp_path / "ok.zip"), "--tasks-dir", str(genuine.tasks)])
    check_contract(result, Tampered("genuine", genuine_zip, (), accept=True))


def test_import_refuses_tampered_bundles_without_writing(genuine: Genuine, tmp_path: Path) -> None:
    """Through ``bench import`` too: refused, and the store gets no run."""
    from .fuzzkit import assert_store_untouched

    rng = random.Random(0)
    members = dict(genuine.bundles["tiny"])
    run = _runs(members, ("eval",))[0]
    lines = _lines(members, run)
    del lines[rng.randrange(len(lines))]
    path = tmp_path / "dropped.zip"
    path.write_bytes(bh.write_zip(bh.reseal(_put_lines(members, run, lines))))
    db = tmp_path / "board.sqlite"
    result = run_cli(["import", str(path), "--db", str(db), "--tasks-dir", str(genuine.tasks)])
    check_contract(result, Tampered("dropped", b"", ("is missing",)))
    assert_store_untouched(db)
    COUNTS["bundles (hand-made)"] += 1

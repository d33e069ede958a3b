"""Raw data sources: read a task's declared source into plain rows.

``read_source`` returns rows (dicts of column -> value) keyed by role (``train``/``dev``/``test``)
when the source has its own splits, or under ``"all"`` when it is a single pool that the task's
``SplitPlan`` divides later. Nothing here knows about labels beyond what the raw files say.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import json
import lzma
import math
import re
import zlib
from pathlib import Path, PurePosixPath
from typing import IO, Any

from bench.errors import DataError, listing, shown
from bench.specs import (
    ARITHMETIC_SUBTASK,
    ArithmeticSource,
    BigBenchSource,
    HubSource,
    LocalSource,
    Source,
    VaderSource,
)

Rows = list[dict[str, Any]]

ALL = "all"

# Columns a BIG-bench row always has; an input_pattern group may not reuse these names.
BIGBENCH_COLUMNS = ("input", "label", "target_scores", "target", "subtask")

VADER_FILES: dict[str, str] = {
    "movies": "movieReviewSnippets_GroundTruth.txt",
    "amazon": "amazonReviewSnippets_GroundTruth.txt",
    "nyt": "nytEditorialSnippets_GroundTruth.txt",
    "tweets": "tweets_GroundTruth.txt",
}

_FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_COMPRESSION = {".gz", ".bz2", ".xz", ".zst", ".zip"}

# What a damaged or mislabelled compressed file raises: gzip.BadGzipFile and bz2 are OSErrors,
# a truncated stream is an EOFError, corrupt deflate data a zlib.error, xz an LZMAError.
_DECOMPRESSION_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError)


def _reason(exc: BaseException) -> str:
    """The first line of an exception's message, short (library messages can quote data)."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return first if len(first) <= 100 else first[:97] + "..."


def read_source(source: Source, base_dir: Path | None = None) -> dict[str, Rows]:
    """Rows of ``source`` by role, or under ``"all"`` for a single pool.

    ``base_dir`` resolves relative paths (the folder of the YAML file that declared the task).
    """
    if isinstance(source, LocalSource):
        return _read_local(source, base_dir)
    if isinstance(source, BigBenchSource):
        return {ALL: read_bigbench(source)}
    if isinstance(source, VaderSource):
        return {ALL: read_vader(source.domain)}
    if isinstance(source, HubSource):
        return _read_hub(source, base_dir)
    if isinstance(source, ArithmeticSource):
        return {ALL: generate_arithmetic(source)}
    raise DataError(f"unsupported source type {type(source).__name__}")


def source_asset(source: Source) -> str | None:
    """The pinned asset a source reads its rows from, if any (local files, hub datasets and
    generated questions need none)."""
    if isinstance(source, BigBenchSource):
        return "bigbench"
    if isinstance(source, VaderSource):
        return "vader"
    return None


def source_origin(source: Source) -> str:
    """Where a source's rows come from, in a few words: the asset, "generated", "local files" or
    the hub dataset."""
    asset = source_asset(source)
    if asset is not None:
        return asset
    if isinstance(source, ArithmeticSource):
        return "generated"
    if isinstance(source, HubSource):
        return f"hub {source.path}"
    return "local files"


# --------------------------------------------------------------------------------------------------
# Local files


def _resolve(path: str, base_dir: Path | None) -> Path:
    p = Path(path).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    return p


def _format_of(path: Path, declared: str | None) -> str:
    if declared is not None:
        return declared
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION:
        suffixes = suffixes[:-1]
    fmt = _FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise DataError(
            f"cannot tell the format of {shown(path.name, 60)} from its extension; set the "
            f"source's format to one of {', '.join(sorted(set(_FORMATS.values())))}"
        )
    return fmt


def read_table(path: Path, fmt: str | None = None) -> Rows:
    """Rows of one local file (jsonl, json, csv, tsv or parquet) as plain Python values."""
    import pandas as pd

    if path.is_dir():
        raise DataError(f"data file {path} is a directory")
    if path.exists() and not path.is_file():
        # A device or FIFO (/dev/zero, a named pipe) would never end or block forever.
        raise DataError(f"data file {path} is not a regular file")
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    fmt = _format_of(path, fmt)
    if fmt in ("jsonl", "json"):
        # The json module, not pandas: values come back exactly as written (no guessing of
        # dates or dtypes, nested objects intact).
        return _read_json_rows(path, lines=fmt == "jsonl")
    try:
        if fmt in ("csv", "tsv"):
            # na_filter=False keeps texts such as "NA", "null" or "None" as strings. TSV files
            # are read without quote handling: a quote in a sentence is just a character.
            frame = pd.read_csv(
                path,
                sep="\t" if fmt == "tsv" else ",",
                na_filter=False,
                quoting=csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL,
            )
        else:
            frame = pd.read_parquet(path)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"data file {path} is empty") from exc
    except Exception as exc:
        # pandas and its codecs raise many unrelated types for one user error (ParserError,
        # UnicodeDecodeError, BadGzipFile, EOFError, zlib.error, ArrowInvalid, zstandard's
        # ZstdError, ImportError for a codec that is not installed); this call only reads the
        # user's file.
        raise DataError(f"cannot read {path} as {fmt}: {_reason(exc)}") from exc
    rows = [_plain(row) for row in frame.to_dict(orient="records")]
    if not rows:
        raise DataError(f"data file {path} has no rows")
    return rows


def _open_text(path: Path) -> IO[str]:
    suffix = path.suffix.lower()
    if suffix in (".zip", ".zst"):
        raise DataError(
            f"cannot read {path}: {suffix} compression is supported for csv and tsv only; use "
            ".gz, .bz2 or .xz for json and jsonl"
        )
    if suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    if suffix == ".bz2":
        return bz2.open(path, "rt", encoding="utf-8")
    if suffix == ".xz":
        return lzma.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def _read_json_rows(path: Path, *, lines: bool) -> Rows:
    where = f"{path}"
    try:
        with _open_text(path) as fh:
            if lines:
                rows: list[Any] = []
                for lineno, line in enumerate(fh, start=1):
                    if line.strip():
                        where = f"{path} line {lineno}"
                        rows.append(json.loads(line))
            else:
                data = json.load(fh)
                rows = _json_records(data, path)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 (byte {exc.start})") from exc
    except ValueError as exc:
        raise DataError(
            f"cannot read {where} as {'jsonl' if lines else 'json'}: {_reason(exc)}"
        ) from exc
    except RecursionError:
        # json's decoder recurses once per level: 100,000 nested brackets exhaust the stack.
        raise DataError(f"cannot read {where}: JSON nested too deeply") from None
    except _DECOMPRESSION_ERRORS as exc:
        reason = getattr(exc, "strerror", None) or _reason(exc)
        raise DataError(f"cannot read {where}: {reason}") from exc
    if not rows:
        raise DataError(f"data file {path} is empty")
    bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
    if bad is not None:
        raise DataError(f"{path}: record {bad + 1} is not a JSON object")
    return [{str(k): v for k, v in r.items()} for r in rows]


def _json_records(data: Any, path: Path) -> list[Any]:
    if isinstance(data, list):
        return data
    # Column-oriented {"text": [...], "label": [...]}, as pandas' to_json(orient="list") writes.
    if isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
        lengths = {len(v) for v in data.values()}
        if len(lengths) == 1:
            return [
                dict(zip(data, values, strict=True)) for values in zip(*data.values(), strict=True)
            ]
    raise DataError(f"{path} must hold a list of objects or an object of equal-length column lists")


def _plain(row: dict[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if hasattr(value, "item") and not isinstance(value, (str, bytes)):
            try:
                value = value.item()  # numpy scalar -> Python scalar
            except (ValueError, TypeError):
                value = value.tolist() if hasattr(value, "tolist") else value
        if isinstance(value, float) and math.isnan(value):
            value = None
        out[str(key)] = value
    return out


def local_files(source: Source, base_dir: Path | None = None) -> dict[str, Path]:
    """The files of a local source by role (or ``"all"``); empty for other sources. Lets errors
    about rows name the file they came from."""
    if not isinstance(source, LocalSource):
        return {}
    if source.path is not None:
        return {ALL: _resolve(source.path, base_dir)}
    return {role: _resolve(path, base_dir) for role, path in source.splits.items()}


def _read_local(source: LocalSource, base_dir: Path | None) -> dict[str, Rows]:
    if source.path is not None:
        return {ALL: read_table(_resolve(source.path, base_dir), source.format)}
    return {
        role: read_table(_resolve(path, base_dir), source.format)
        for role, path in source.splits.items()
    }


# --------------------------------------------------------------------------------------------------
# BIG-bench


def bigbench_task_dir(task: str) -> Path:
    """Folder of a BIG-bench task (or subtask, ``parent/child``) in the fetched asset."""
    from bench.assets import asset_dir

    parts = PurePosixPath(task).parts
    if not parts or task.startswith("/") or any(p in ("..", ".") for p in parts):
        raise DataError(f"invalid BIG-bench task name {shown(task, 60)}")
    root = asset_dir("bigbench") / "benchmark_tasks"
    folder = root.joinpath(*parts)
    if not (folder / "task.json").is_file():
        known = sorted(p.name for p in root.iterdir() if (p / "task.json").is_file())
        raise DataError(
            f"BIG-bench task {shown(task, 60)} is not in the fetched bigbench asset (available: "
            f"{listing(known, 5, 30)}); other tasks need an include rule in bench/assets.yaml"
        )
    return folder


def read_bigbench(source: BigBenchSource, task_dir: Path | None = None) -> Rows:
    """Rows of a BIG-bench task; a task without examples of its own concatenates its subtasks.

    Each row has ``input``, ``label`` (the ``target_scores`` key with the highest score, ties to
    the first; else a string ``target``, else the first of a list ``target``), the raw
    ``target_scores``/``target`` and any other example fields, plus one column per named group
    of ``input_pattern`` (whitespace-stripped). Subtask rows also carry ``subtask``.
    """
    if isinstance(source.task, list):
        if task_dir is not None:
            raise ValueError("task_dir reads one task; a list of tasks reads the asset")
        rows = []
        for task in source.task:
            part = read_bigbench(BigBenchSource(task=task, input_pattern=source.input_pattern))
            for row in part:
                # Every row says where it came from, as a parent task's subtask rows do.
                row.setdefault("subtask", task)
            rows.extend(part)
        return rows
    folder = bigbench_task_dir(source.task) if task_dir is None else task_dir
    rows = _bigbench_rows(folder, subtask=None)
    if not rows:
        raise DataError(f"BIG-bench task {shown(source.task, 60)} has no examples")
    if source.input_pattern is not None:
        _apply_pattern(rows, source.input_pattern, source.task)
    return rows


def _bigbench_rows(folder: Path, subtask: str | None) -> Rows:
    data = _load_json(folder / "task.json")
    examples = data.get("examples") if isinstance(data, dict) else None
    if examples is None:
        subdirs = sorted(p for p in folder.iterdir() if (p / "task.json").is_file())
        rows: Rows = []
        for sub in subdirs:
            name = sub.name if subtask is None else f"{subtask}/{sub.name}"
            rows.extend(_bigbench_rows(sub, subtask=name))
        return rows
    if not isinstance(examples, list):
        raise DataError(f"{folder / 'task.json'}: 'examples' is not a list")
    out: Rows = []
    for i, example in enumerate(examples):
        if not isinstance(example, dict) or not isinstance(example.get("input"), str):
            raise DataError(f"{folder / 'task.json'}: example {i} has no string 'input'")
        row = dict(example)
        row["label"] = _bigbench_label(example)
        if subtask is not None:
            row["subtask"] = subtask
        out.append(row)
    return out


def _bigbench_label(example: dict[str, Any]) -> str | None:
    scores = example.get("target_scores")
    if isinstance(scores, dict) and scores:
        # max() keeps the first of equal maxima, i.e. ties go to the first key in file order.
        return str(max(scores, key=lambda k: scores[k]))
    target = example.get("target")
    if isinstance(target, str):
        return target
    if isinstance(target, list) and target and isinstance(target[0], str):
        return target[0]
    return None


def _apply_pattern(rows: Rows, pattern: str, task: str) -> None:
    regex = re.compile(pattern, re.DOTALL)
    clash = sorted(set(regex.groupindex) & set(BIGBENCH_COLUMNS))
    if clash:
        raise DataError(
            f"input_pattern of BIG-bench task {shown(task, 60)} names group {shown(clash[0], 30)}, which "
            "is a reserved column; rename the group"
        )
    failed: list[str] = []
    for row in rows:
        match = regex.fullmatch(row["input"].strip())
        if match is None:
            failed.append(row["input"])
            continue
        for key, value in match.groupdict().items():
            row[key] = value.strip() if isinstance(value, str) else value
    if failed:
        # The start of the input is what a pattern is usually written against.
        first = failed[0].strip()
        start = first if len(first) <= 80 else first[:77] + "..."
        raise DataError(
            f"input_pattern of BIG-bench task {shown(task, 60)} does not match {len(failed)} of "
            f"{len(rows)} inputs; first: {start!r}; fix the task's input_pattern"
        )


def _load_json(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as fh:
            return json.load(fh)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise DataError(f"{path} is not valid JSON: {_reason(exc)}") from exc
    except RecursionError:
        raise DataError(f"{path} is not usable JSON: nested too deeply") from None


# --------------------------------------------------------------------------------------------------
# VADER


def read_vader(domain: str, folder: Path | None = None) -> Rows:
    """Rows (``id``, ``rating``, ``text``) of one VADER domain's ground-truth file.

    The files are UTF-8 with CRLF line ends, one ``id<TAB>mean rating<TAB>text`` per line.
    """
    if domain not in VADER_FILES:
        raise DataError(
            f"unknown VADER domain {shown(domain, 30)}; known: {', '.join(VADER_FILES)}"
        )
    if folder is None:
        from bench.assets import asset_dir

        folder = asset_dir("vader")
    path = folder / VADER_FILES[domain]
    try:
        # Strict decoding: a wrongly encoded file must fail loudly, not turn into mojibake.
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 (byte {exc.start})") from exc
    rows: Rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t", 2)
        try:
            if len(parts) != 3:
                raise ValueError
            rating = float(parts[1])
        except ValueError:
            raise DataError(
                f"{path.name} line {lineno}: expected 'id<TAB>rating<TAB>text', got {line[:60]!r}"
            ) from None
        rows.append({"id": parts[0].strip(), "rating": rating, "text": parts[2].strip()})
    if not rows:
        raise DataError(f"{path} has no rows")
    return rows


# --------------------------------------------------------------------------------------------------
# Generated arithmetic

_OPERATION_WORDS = {
    "addition": "plus",
    "subtraction": "minus",
    "multiplication": "times",
    "division": "divided by",
}


def generate_arithmetic(source: ArithmeticSource) -> Rows:
    """Rows (``id``, ``input``, ``target``, ``subtask``) of generated arithmetic questions.

    Operand pairs are numbered (pair k of an n-digit subtask is ``divmod(k, 10**n)``) and drawn
    with SHA-256 of the seed, the subtask and a counter (see :func:`_draw`), not with ``random``,
    so the rows depend on the spec alone, never on the Python version.
    """
    rows: Rows = []
    for subtask in source.subtasks:
        match = ARITHMETIC_SUBTASK.fullmatch(subtask)
        if match is None:  # the spec validates names; a hand-built spec may not have
            raise DataError(f"unknown arithmetic subtask {shown(subtask, 40)}")
        digits, operation = int(match.group(1)), match.group(2)
        span = 10**digits
        # Division pairs are (divisor 1..span-1, quotient 0..span-1): dividend = their product.
        count = (span - 1) * span if operation == "division" else span * span
        for i, k in enumerate(_draw(f"{source.seed}/{subtask}", count, source.per_subtask)):
            first, second = divmod(k, span)
            if operation == "division":
                divisor, quotient = first + 1, second
                a, b, answer = divisor * quotient, divisor, quotient
            elif operation == "addition":
                a, b, answer = first, second, first + second
            elif operation == "subtraction":
                a, b, answer = first, second, first - second
            else:
                a, b, answer = first, second, first * second
            rows.append({
                "id": f"{subtask}/{i}",
                "input": f"What is {a} {_OPERATION_WORDS[operation]} {b}?",
                "target": str(answer),
                "subtask": subtask,
            })  # fmt: skip
    return rows


def _draw(key: str, count: int, wanted: int) -> list[int]:
    """``wanted`` distinct numbers below ``count`` (all of them if fewer), in draw order: the
    j-th draw is SHA-256 of ``key/j`` modulo ``count``, repeats skipped; when at least half of
    the numbers are wanted, the numbers ordered by SHA-256 of ``key/number`` instead."""

    def hashed(j: int) -> int:
        return int.from_bytes(hashlib.sha256(f"{key}/{j}".encode()).digest()[:8], "big")

    if 2 * wanted >= count:
        # Dense: order every number by its hash and keep the first ones (no long tail of
        # rejected repeats when nearly all numbers are wanted).
        return sorted(range(count), key=hashed)[:wanted]
    seen: set[int] = set()
    out: list[int] = []
    j = 0
    while len(out) < wanted:
        k = hashed(j) % count  # count <= 10**10, so the bias of a 64-bit modulus is < 1e-9
        j += 1
        if k not in seen:
            seen.add(k)
            out.append(k)
    return out


# --------------------------------------------------------------------------------------------------
# Hugging Face datasets


def _read_hub(source: HubSource, base_dir: Path | None) -> dict[str, Rows]:
    path = source.path
    # Only explicit paths ("./x", "../x", "/x", "~/x") are local folders; "org/name" stays a hub
    # id even if a folder of that name happens to exist next to the task file.
    if path.startswith((".", "/", "~")):
        path = str(_resolve(path, base_dir))
    wanted: dict[str, str] = {str(r): s for r, s in source.splits.items()} or {ALL: "train"}
    return {role: _load_split(source, path, split) for role, split in wanted.items()}


def _load_split(source: HubSource, path: str, split: str) -> Rows:
    try:
        import datasets

        ds = datasets.load_dataset(path, source.name, split=split, revision=source.revision)
        rows = [_plain(r) for r in ds.to_list()]
    except Exception as exc:  # datasets raises many unrelated types for one user error
        where = path + (f" ({source.name})" if source.name else "")
        raise DataError(
            f"cannot load dataset {where} split {shown(split, 40)}: {type(exc).__name__}: "
            f"{_reason(exc)}"
        ) from exc
    if not rows:
        raise DataError(f"dataset {path} split {shown(split, 40)} has no rows")
    return rows

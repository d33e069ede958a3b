"""Reading and writing bundle zips as data, with limits checked before anything is inflated.

A bundle is read into memory, never extracted to disk. Before a byte is decompressed, every
member's name, type and declared size is checked: no absolute paths, ``..``, backslashes or
drive letters (zip slip), no links, no encrypted members, no duplicate names, only the names a
bundle has, at most ``Limits.max_members`` members, at most ``Limits.max_total_bytes`` declared
in all, and no member compressed more than ``Limits.max_ratio`` to 1 (a zip bomb declares its
size truthfully, or lies about it; the reader then stops at the declared size plus one byte).
"""

from __future__ import annotations

import re
import stat
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError, shown

MANIFEST = "manifest.json"
MEMBER_RE = re.compile(
    r"manifest\.json|rows/[0-9a-f]{24}\.(jsonl|leaves)|model/README\.md"
    r"|interop/(model-index\.yaml|lm-eval-results\.json)"
)
# Fixed member times: the same content gives the same zip bytes.
_EPOCH = (1980, 1, 1, 0, 0, 0)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Limits:
    """What a bundle may be. Genuine bundles are megabytes: a million evaluated examples with
    their texts and prompts stay far below these."""

    max_file_bytes: int = 1 << 30  # the zip on disk
    max_members: int = 10_000
    max_total_bytes: int = 2 << 30  # declared uncompressed size of all members
    max_member_bytes: int = 1 << 30
    max_manifest_bytes: int = 64 << 20
    # Text compresses well (repeated few-shot prompts about 30 to 1); a bomb, thousands to 1.
    max_ratio: int = 200
    ratio_floor: int = 1 << 20  # members smaller than this are not ratio-checked


class BundleReadError(BenchError):
    """The zip cannot be read as a bundle at all: nothing further is checked."""


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} bytes"  # pragma: no cover


def _unsafe_name(name: str) -> str | None:
    """Why a member name could escape the folder it would be extracted into, if it could."""
    if "\\" in name:
        return "a backslash in its name"
    if "\x00" in name:
        return "a NUL byte in its name"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "an absolute path"
    if any(part == ".." for part in name.split("/")):
        return "'..' in its path (path traversal)"
    return None


def _check_members(path: Path, infos: Sequence[zipfile.ZipInfo], limits: Limits) -> None:
    where = path.name
    if len(infos) > limits.max_members:
        raise BundleReadError(
            f"{where}: {len(infos)} members, more than a bundle may hold "
            f"({limits.max_members}); refused before extraction"
        )
    seen: set[str] = set()
    total = 0
    for info in infos:
        name = info.filename
        unsafe = _unsafe_name(name)
        if unsafe is not None:
            raise BundleReadError(
                f"{where}: member {shown(name, 60)} has {unsafe}; refused before extraction"
            )
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise BundleReadError(f"{where}: member {shown(name, 60)} is a symbolic link")
        if info.is_dir() or not MEMBER_RE.fullmatch(name):
            raise BundleReadError(
                f"{where}: unexpected member {shown(name, 60)} (a bundle holds manifest.json, "
                "rows/, model/README.md and interop/ files only)"
            )
        if name in seen:
            raise BundleReadError(f"{where}: member {shown(name, 60)} appears twice")
        seen.add(name)
        if info.flag_bits & 0x1:
            raise BundleReadError(f"{where}: member {shown(name, 60)} is encrypted")
        if info.file_size > limits.max_member_bytes:
            raise BundleReadError(
                f"{where}: member {shown(name, 60)} would expand to {_size(info.file_size)} "
                f"(limit {_size(limits.max_member_bytes)}); refused before extraction"
            )
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > limits.ratio_floor and ratio > limits.max_ratio:
            raise BundleReadError(
                f"{where}: member {shown(name, 60)} would expand {ratio:,.0f} times (to "
                f"{_size(info.file_size)}); a zip bomb? refused before extraction"
            )
        total += info.file_size
        if total > limits.max_total_bytes:
            raise BundleReadError(
                f"{where}: members would expand to more than {_size(limits.max_total_bytes)} in "
                "all; refused before extraction"
            )
    if MANIFEST not in seen:
        raise BundleReadError(f"{where}: no manifest.json (not a bundle)")


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> bytes:
    """The member's bytes, stopping one byte past its declared size (a lying header)."""
    out = bytearray()
    with zf.open(info) as handle:
        while len(out) <= info.file_size:
            block = handle.read(min(_CHUNK, info.file_size + 1 - len(out)))
            if not block:
                break
            out += block
    if len(out) != info.file_size:
        raise BundleReadError(
            f"{where}: member {shown(info.filename, 60)} holds {'more' if len(out) > info.file_size else 'less'} "
            "than its header declares; refused"
        )
    return bytes(out)


def read_members(path: Path, limits: Limits | None = None) -> dict[str, bytes]:
    """Every member of the bundle at ``path``, by name, after the checks above; a
    BundleReadError (one line) when it cannot be read as a bundle."""
    limits = limits or Limits()
    where = path.name
    if not path.exists():
        raise BundleReadError(f"bundle {path} does not exist")
    if path.is_dir() or not path.is_file():
        raise BundleReadError(f"bundle {path} is not a regular file")
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        raise BundleReadError(
            f"{where} is {_size(size)}, larger than a bundle may be ({_size(limits.max_file_bytes)})"
        )
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            _check_members(path, infos, limits)
            manifest = next(i for i in infos if i.filename == MANIFEST)
            if manifest.file_size > limits.max_manifest_bytes:
                raise BundleReadError(
                    f"{where}: manifest.json would expand to {_size(manifest.file_size)} "
                    f"(limit {_size(limits.max_manifest_bytes)})"
                )
            return {info.filename: _read_member(zf, info, where) for info in infos}
    except BundleReadError:
        raise
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "damaged"
        raise BundleReadError(
            f"{where} is not a readable zip file ({shown(reason, 60)}: truncated or damaged)"
        ) from None
    except NotImplementedError as exc:
        raise BundleReadError(f"{where}: {shown(str(exc), 80)}") from None
    except (OSError, ValueError, RuntimeError) as exc:
        # zlib errors in a damaged stream, unreadable files, unsupported features.
        text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise BundleReadError(f"{where} cannot be read as a zip ({shown(text, 80)})") from None


def write_zip(path: Path, members: Sequence[tuple[str, bytes]]) -> None:
    """Write ``members`` (manifest first) to ``path`` atomically (a temporary file beside it,
    then renamed), deflated, with fixed times."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            for name, data in members:
                info = zipfile.ZipInfo(name, date_time=_EPOCH)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                zf.writestr(info, data)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BenchError(f"cannot write bundle {path}: {exc.strerror or exc}") from None

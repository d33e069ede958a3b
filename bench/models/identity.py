"""What exactly a model is: a content hash for local folders, a commit for hub snapshots.

The identity enters run keys, so a retrained model in the same folder never reuses old results.
Only files that change predictions are hashed (config, weights, tokenizer), not READMEs or logs.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING

from bench.errors import ModelError

if TYPE_CHECKING:
    from bench.backends import ModelIdentity

# Files besides weights that decide how text becomes logits.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")

# "name" or "org/name" as the hub spells repository ids.
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")

# (resolved path, size, mtime_ns) -> sha256; a rewritten file changes size or mtime.
_FILE_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def local_model_dir(path: str) -> Path | None:
    """The folder ``path`` names, None for a hub id; ModelError for a path that is not there.

    Anything that exists locally wins; a string that cannot be a hub id (``./x``, ``/x``, ``~/x``,
    ``a/b/c``) is a local path that is missing.
    """
    candidate = Path(path).expanduser()
    if candidate.exists():
        if not candidate.is_dir():
            raise ModelError(f"model path {path} is a file, not a model folder")
        return candidate
    if not _HUB_ID_RE.match(path) or path.startswith((".", "~")):
        raise ModelError(f"model folder {path} does not exist")
    return None


def file_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    cached = _FILE_HASH_CACHE.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    _FILE_HASH_CACHE[key] = digest.hexdigest()
    return _FILE_HASH_CACHE[key]


def identity_files(folder: Path) -> list[Path]:
    """The files of a model folder that the hash covers, sorted by name."""
    names = {"config.json", *TOKENIZER_FILES}
    found = {p for p in folder.iterdir() if p.is_file() and p.name in names}
    for pattern in WEIGHT_PATTERNS:
        found.update(p for p in folder.glob(pattern) if p.is_file())
    return sorted(found, key=lambda p: p.name)


def folder_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for file in identity_files(folder):
        # Name and content both count: renaming a weight file changes what loads.
        digest.update(f"{file.relative_to(folder).as_posix()}\0{file_sha256(file)}\n".encode())
    return digest.hexdigest()


def hub_snapshot_commit(
    repo_id: str, revision: str | None = None, cache_dir: str | Path | None = None
) -> str | None:
    """The commit of the cached snapshot for ``repo_id`` at ``revision``, None if not cached."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.constants import HF_HUB_CACHE

    found = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir, revision=revision)
    if isinstance(found, str):
        # .../models--org--name/snapshots/<commit>/config.json
        return Path(found).parent.name
    # Fall back to reading the cache layout directly (a snapshot without config.json at its top).
    repo_dir = Path(cache_dir or HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--"))
    if revision is not None and _COMMIT_RE.match(revision):
        return revision if (repo_dir / "snapshots" / revision).is_dir() else None
    ref = repo_dir / "refs" / (revision or "main")
    if ref.is_file():
        commit = ref.read_text().strip()
        if (repo_dir / "snapshots" / commit).is_dir():
            return commit
    return None


def resolve_hub_commit(
    repo_id: str, revision: str | None = None, cache_dir: str | Path | None = None
) -> str:
    """The commit ``repo_id`` at ``revision`` names: from the local hub cache, else a full
    commit hash as given, else asked of the hub. A ModelError in one line when none of these
    can answer (offline and not cached): a moving ``main`` must never be keyed unresolved."""
    commit = hub_snapshot_commit(repo_id, revision, cache_dir)
    if commit is not None:
        return commit
    if revision is not None and _COMMIT_RE.match(revision):
        return revision
    from bench.models.hf_loading import first_line, offline

    at = f" at revision {revision!r}" if revision else ""
    if offline():
        from bench.hub import offline_reason

        why = offline_reason() or "HF_HUB_OFFLINE"
        raise ModelError(
            f"model {repo_id!r}{at} is not a local folder and not in the hub cache, and the hub "
            f"is offline ({why}); its exact version cannot be pinned: download it first, "
            "pass a local folder, or pin a full commit hash with --revision"
        )
    from huggingface_hub import HfApi

    try:
        info = HfApi().model_info(repo_id, revision=revision)
    except Exception as exc:  # network errors, 404s, gated repositories: one line each
        raise ModelError(
            f"cannot resolve model {repo_id!r}{at} on the hub: {first_line(exc)}"
        ) from None
    if not info.sha:
        raise ModelError(f"the hub gave no commit for model {repo_id!r}{at}")
    return str(info.sha)


def model_identity(
    path: str,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    backend: str = "hf",
) -> ModelIdentity:
    """Which model ``path`` names, for a local folder or a hub id.

    Local: ``hash`` is a SHA-256 over (relative path, file SHA-256) of config, weights and
    tokenizer files. Hub: ``hash`` is the resolved commit (see :func:`resolve_hub_commit`).
    """
    from bench.backends import ModelIdentity

    folder = local_model_dir(path)
    if folder is not None:
        if not (folder / "config.json").is_file():
            raise ModelError(f"model folder {path} has no config.json")
        return ModelIdentity(backend, "local", path, folder_hash(folder), revision)
    commit = resolve_hub_commit(path, revision, cache_dir)
    return ModelIdentity(backend, "hub", path, commit, revision)

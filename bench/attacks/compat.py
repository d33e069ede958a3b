"""The one place that knows how to import TextAttack 0.3.11 offline.

``import textattack`` has side effects that would leak into the rest of the harness, and it
reaches for the network:

- it reads NLTK's English stop words at import (a module-level ``StopwordModification()``) and
  raises LookupError when they are missing; the first import for a cache folder also calls
  ``nltk.download`` six times unless a post-install marker file exists;
- with ``TA_CACHE_DIR`` set it overwrites ``HF_HOME``, ``XDG_CACHE_HOME``, ``TFHUB_CACHE_DIR`` and
  ``PYTORCH_TRANSFORMERS_CACHE`` (and always ``TOKENIZERS_PARALLELISM``), which would move the
  user's hub cache and this package's own cache (``cache_root`` follows ``XDG_CACHE_HOME``);
- it calls ``logging.config.dictConfig`` without ``disable_existing_loggers=False``, which
  disables every logger that exists at that moment (ours included);
- ``WordSwapWordNet.__init__`` calls ``nltk.download("omw-1.4")``.

:func:`load_textattack` prepares an NLTK data folder from pinned data (stop words shipped in this
package, WordNet repaired from the ``wordnet`` asset), imports TextAttack with the marker in
place and ``nltk.download`` disabled, and puts back everything the import changed. Nothing else in
the package touches TextAttack's globals.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.errors import AssetError, BenchError

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).with_name("data")
# TextAttack 0.3.11 skips its NLTK downloads when this file exists in its cache folder.
POST_INSTALL_MARKER = "post_install_check_3"
# Variables this module sets on purpose and leaves set (only when the user had not set them).
_KEPT_ENV = ("FLAIR_CACHE_ROOT", "MPLCONFIGDIR")
# The *.exc files NLTK's WordNet reader opens; the asset lacks them and they may be empty.
_WORDNET_EXC = ("adj.exc", "adv.exc", "noun.exc", "verb.exc")
_WORDNET_FILES = (
    "LICENSE.txt",
    "data.adj",
    "data.adv",
    "data.verb",
    "index.adj",
    "index.adv",
    "index.noun",
    "index.verb",
    "index.sense",
    "lexnames",
)

_lock = threading.RLock()
_module: ModuleType | None = None
_import_seconds: float | None = None
_download_block_depth = 0
_saved_download: Any = None


# --------------------------------------------------------------------------------------------------
# Folders


def textattack_cache_dir() -> Path:
    """TextAttack's cache folder: ``<bench cache>/textattack``."""
    from bench.assets import cache_root

    return cache_root() / "textattack"


def _nltk_root() -> Path:
    return textattack_cache_dir() / "nltk"


def read_word_list(name: str) -> list[str]:
    """A word list shipped in ``bench/attacks/data`` (``stopwords_<name>.txt``), comments dropped."""
    path = DATA_DIR / f"stopwords_{name}.txt"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BenchError(f"packaged word list {path} is missing ({exc.strerror or exc})") from exc
    return [w for w in (line.strip() for line in text.splitlines()) if w and not w.startswith("#")]


def _publish(build: Path, target: Path) -> None:
    """Move a finished folder into place; a concurrent builder that won keeps its copy."""
    try:
        os.replace(build, target)
    except OSError:
        if not target.is_dir():
            raise
        shutil.rmtree(build, ignore_errors=True)


def _stopwords_folder() -> Path:
    """An NLTK data folder holding only ``corpora/stopwords/english`` (NLTK's standard list)."""
    from bench.specs import sha256_text

    words = read_word_list("english")
    text = "\n".join(words) + "\n"
    target = _nltk_root() / f"stopwords-{sha256_text(text)[:12]}"
    if (target / "corpora" / "stopwords" / "english").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        folder = build / "corpora" / "stopwords"
        folder.mkdir(parents=True)
        (folder / "english").write_text(text, encoding="utf-8")
        _publish(build, target)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return target


def wordnet_folder() -> Path:
    """An NLTK data folder with ``corpora/wordnet`` repaired from the pinned ``wordnet`` asset.

    Built once per asset hash, atomically (in a temporary sibling, then renamed). The asset keeps
    ``data.noun`` split in two: ``data.noun1`` ends without its final newline exactly where the
    next synset line of ``data.noun2`` starts, so joining them with one newline restores the
    original 15,300,280-byte file and the byte offsets ``index.noun`` points at. The ``*.exc``
    morphological exception lists are absent; empty files let NLTK open the corpus (lookups of
    irregular inflections such as "geese" then fall back to the regular rules).
    """
    from bench.assets import asset_dir, get_spec

    source = asset_dir("wordnet")
    target = _nltk_root() / f"wordnet-{get_spec('wordnet').sha256[:12]}"
    if (target / "corpora" / "wordnet" / "data.noun").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        folder = build / "corpora" / "wordnet"
        folder.mkdir(parents=True)
        # Copies, not links: NLTK 3.10 refuses to read corpus files through symlinks.
        for name in _WORDNET_FILES:
            shutil.copyfile(source / name, folder / name)
        with (folder / "data.noun").open("wb") as out:
            out.write((source / "data.noun1").read_bytes())
            out.write(b"\n")
            out.write((source / "data.noun2").read_bytes())
        for name in _WORDNET_EXC:
            (folder / name).write_bytes(b"")
        _publish(build, target)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return target


def _prepend_nltk_path(folder: Path) -> None:
    import nltk

    entry = str(folder)
    if entry in nltk.data.path:
        nltk.data.path.remove(entry)
    nltk.data.path.insert(0, entry)


def ensure_nltk_wordnet() -> Path:
    """Build the repaired WordNet folder and put it first on ``nltk.data.path``.

    Returns the ``corpora/wordnet`` folder itself (what ``WordNetCorpusReader`` takes).
    """
    with _lock:
        root = wordnet_folder()
        _prepend_nltk_path(root)
    return root / "corpora" / "wordnet"


# --------------------------------------------------------------------------------------------------
# nltk.download


def _no_download(*args: Any, **kwargs: Any) -> bool:
    # What nltk.download returns when a package cannot be fetched; callers carry on.
    log.debug("blocked nltk.download%s", args)
    return False


@contextlib.contextmanager
def nltk_downloads_blocked() -> Iterator[None]:
    """``nltk.download`` is a no-op returning False inside this block (re-entrant)."""
    global _download_block_depth, _saved_download
    import nltk

    with _lock:
        if _download_block_depth == 0:
            _saved_download = nltk.download
            nltk.download = _no_download
        _download_block_depth += 1
    try:
        yield
    finally:
        with _lock:
            _download_block_depth -= 1
            if _download_block_depth == 0:
                nltk.download = _saved_download
                _saved_download = None


# --------------------------------------------------------------------------------------------------
# Import


def _prepare_environment(cache: Path) -> dict[str, str]:
    saved = dict(os.environ)
    cache.mkdir(parents=True, exist_ok=True)
    (cache / POST_INSTALL_MARKER).touch()
    os.environ["TA_CACHE_DIR"] = str(cache)
    # flair and matplotlib would write under ~ otherwise; a user's own setting wins.
    if not os.environ.get("FLAIR_CACHE_ROOT"):
        os.environ["FLAIR_CACHE_ROOT"] = str(cache / "flair")
    if not os.environ.get("MPLCONFIGDIR"):
        mpl = cache / "matplotlib"
        mpl.mkdir(parents=True, exist_ok=True)
        os.environ["MPLCONFIGDIR"] = str(mpl)
    return saved


def _restore_environment(saved: dict[str, str]) -> None:
    # Beyond TextAttack's own cache variables, its import chain sets WANDB_SILENT, KMP_* and
    # TORCHINDUCTOR_CACHE_DIR; all of it is put back, so importing it changes nothing visible.
    for key in set(os.environ) | set(saved):
        if key in _KEPT_ENV and key not in saved:
            continue
        if key not in saved:
            del os.environ[key]
        elif os.environ.get(key) != saved[key]:
            os.environ[key] = saved[key]


def _restore_loggers(before: dict[str, bool]) -> None:
    # dictConfig disabled every logger that existed when TextAttack called it, including those
    # its own dependencies created moments earlier; none of them asked for that.
    for name, obj in logging.root.manager.loggerDict.items():
        if isinstance(obj, logging.Logger):
            obj.disabled = before.get(name, False)


def _import() -> ModuleType:
    global _import_seconds
    started = time.perf_counter()
    # The hub libraries read HF_HOME and friends once, at their own import: importing them first
    # keeps the user's caches, whatever TextAttack does to the environment afterwards.
    import datasets  # noqa: F401
    import huggingface_hub  # noqa: F401
    import transformers  # noqa: F401

    stopwords = _stopwords_folder()
    _prepend_nltk_path(stopwords)
    try:
        ensure_nltk_wordnet()
    except AssetError:
        # Character-level attacks need no WordNet; components that do call ensure_nltk_wordnet
        # themselves and report the missing asset then.
        log.debug("wordnet asset not fetched; WordNet attacks will ask for it")

    loggers = {
        name: obj.disabled
        for name, obj in logging.root.manager.loggerDict.items()
        if isinstance(obj, logging.Logger)
    }
    saved_env = _prepare_environment(textattack_cache_dir())
    try:
        with nltk_downloads_blocked():
            import textattack
    except LookupError as exc:  # an NLTK resource we did not provide
        first = str(exc).strip().splitlines()
        raise BenchError(
            f"cannot import TextAttack offline: {first[1] if len(first) > 1 else exc}"
        ) from exc
    finally:
        _restore_environment(saved_env)
        _restore_loggers(loggers)
    # TextAttack logs every model/goal compatibility check at INFO on its own stderr handler
    # (its logger carries an explicit INFO level, so the parent's level does not reach it).
    for name in ("textattack", textattack.shared.utils.logger.name):
        logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger(name).addFilter(_no_unknown_model_warning)
    _import_seconds = time.perf_counter() - started
    return textattack


def _no_unknown_model_warning(record: logging.LogRecord) -> bool:
    """Drop TextAttack's "Unknown if model of class <class 'NoneType'> compatible" warning. It
    judges a model by its torch module's class, and a model without one (ONNX) has none to show,
    so every attack on it warned. What a run attacks is checked when it loads (a classifier);
    the warning says nothing about it."""
    return not record.getMessage().startswith("Unknown if model of class <class 'NoneType'>")


def load_textattack() -> ModuleType:
    """Import TextAttack offline (once per process, thread-safe) and return the module."""
    global _module
    if _module is not None:
        return _module
    with _lock:
        if _module is None:
            _module = _import()
    return _module


def import_seconds() -> float | None:
    """How long the first :func:`load_textattack` took (None before it ran)."""
    return _import_seconds


def textattack_version() -> str:
    """The installed TextAttack version, read from package metadata (no import)."""
    try:
        return metadata.version("textattack")
    except metadata.PackageNotFoundError:
        return "not installed"

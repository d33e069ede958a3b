"""Loading Hugging Face checkpoints safely and with one-line errors; shared by both HF adapters.

Every HF load in the harness goes through here: the local-folder check (config, safetensors
weights unless the user trusts pickles, a tokenizer), the offline switch, a quiet transformers
logger, the exception ladder that turns the library's many failure types into one ``ModelError``
line, and the check that no trained weight is missing (a base encoder loads "fine" with a random
head, and evaluating it would report noise).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.errors import ModelError
from bench.models.identity import TOKENIZER_FILES

# Tokenizers without a declared limit report a huge sentinel instead of None.
NO_LIMIT = 100_000
DTYPES = ("auto", "float32", "bfloat16", "float16")
_OFF = {"1", "true", "yes", "on"}


def offline() -> bool:
    """Whether the hub must not be contacted. Read at call time (the hub libraries read it once
    at import), so a CLI flag or a test can still switch it on: without it an unreachable hub
    costs ~30 s of retries. bench.hub also probes the endpoint once per process: an unreachable
    hub means the cache only."""
    from bench.hub import hub_offline

    if hub_offline():  # the variables, then the probe; before transformers is even imported
        return True
    from transformers.utils import is_offline_mode

    flag = os.environ.get("HF_HUB_OFFLINE", os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return is_offline_mode() or flag.strip().lower() in _OFF


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def resolve_device(device: str = "auto") -> str:
    """``auto``: cuda, then mps, then cpu. An explicit device must be available."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} requested but CUDA is not available")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ModelError("device 'mps' requested but MPS is not available")
    try:
        torch.device(device)
    except RuntimeError as exc:
        raise ModelError(f"unknown device {device!r}: {first_line(exc)}") from exc
    return device


def resolve_dtype(dtype: str, device: str) -> str:
    """``auto``: bfloat16 on a CUDA device that supports it, float32 everywhere else.

    Returns the dtype's name (JSON-friendly, so it can enter run identities).
    """
    import torch

    if dtype not in DTYPES:
        raise ModelError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    if dtype == "auto":
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return "bfloat16"
        return "float32"
    return dtype


def load_error(path: str, folder: Path | None, exc: BaseException, kind: str) -> ModelError:
    """One line for a failed ``from_pretrained``; ``kind`` names what the adapter needs."""
    message = first_line(exc)
    if folder is None and isinstance(exc, OSError):
        from bench.hub import not_cached_error

        offline_message = not_cached_error(path)
        if offline_message is not None:
            return ModelError(offline_message)
        return ModelError(
            f"cannot load model '{path}' (not a local folder and not in the hub cache; "
            f"offline?): {message}"
        )
    if isinstance(exc, ValueError) and "Unrecognized configuration class" in str(exc):
        return ModelError(f"model {path} is not {kind}: {message}")
    return ModelError(f"cannot load model {path}: {message}")


def check_local_folder(folder: Path, path: str, use_safetensors: bool) -> None:
    """Refuse a local folder early, with a message that says what is wrong with it."""
    if not (folder / "config.json").is_file():
        raise ModelError(f"model folder {path} has no config.json")
    has_safetensors = any(folder.glob("*.safetensors"))
    pickles = sorted(p.name for p in folder.glob("*.bin"))
    if use_safetensors and not has_safetensors:
        if pickles:
            raise ModelError(
                f"model folder {path} has only pickle weights ({', '.join(pickles)}), which can "
                "run code when loaded; convert them to safetensors, or set use_safetensors: "
                "false in the model spec if you trust the folder"
            )
        raise ModelError(f"model folder {path} has no weights (*.safetensors)")
    if not has_safetensors and not pickles:
        raise ModelError(f"model folder {path} has no weights (*.safetensors or *.bin)")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelError(f"model folder {path} has no tokenizer files")


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Loading warnings become ModelErrors (or nothing); the library's own multi-line versions
    would only add noise."""
    import transformers

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)


def hub_options(
    folder: Path | None, revision: str | None, trust_remote_code: bool
) -> dict[str, Any]:
    """``from_pretrained`` options common to configs, weights and tokenizers."""
    return {
        "revision": revision,
        "trust_remote_code": trust_remote_code,
        "local_files_only": folder is not None or offline(),
    }


def load_weights(
    loader: Any,
    source: str,
    path: str,
    folder: Path | None,
    kind: str,
    *,
    ignore_missing: Callable[[str], bool] = lambda key: False,
    missing_hint: str = "",
    **options: Any,
) -> Any:
    """``loader.from_pretrained(source, output_loading_info=True, **options)`` with the
    exception ladder and the missing-weights check; returns the model."""
    with quiet_transformers():
        try:
            model, info = loader.from_pretrained(source, output_loading_info=True, **options)
        except ModelError:
            raise
        except (OSError, ValueError, KeyError, RuntimeError, ImportError) as exc:
            raise load_error(path, folder, exc, kind) from exc
        except Exception as exc:  # safetensors' own error type, unreadable headers, ...
            raise ModelError(f"cannot read weights of model {path}: {first_line(exc)}") from exc
    missing = [k for k in info.get("missing_keys", []) if k and not ignore_missing(k)]
    if missing:
        shown = ", ".join(sorted(missing)[:3]) + (", ..." if len(missing) > 3 else "")
        raise ModelError(f"model {path} is missing trained weights ({shown}){missing_hint}")
    return model


def load_tokenizer(source: str, path: str, **options: Any) -> Any:
    from transformers import AutoTokenizer

    with quiet_transformers():
        try:
            return AutoTokenizer.from_pretrained(source, use_fast=True, **options)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            message = f"cannot load the tokenizer of model {path}: {first_line(exc)}"
            raise ModelError(message) from exc


def read_config(
    source: str, path: str, folder: Path | None, options: dict[str, Any], kind: str = "a model"
) -> Any:
    """A model's config alone (no weights read)."""
    from transformers import AutoConfig

    with quiet_transformers():
        try:
            return AutoConfig.from_pretrained(source, **options)
        except (OSError, ValueError, KeyError) as exc:
            raise load_error(path, folder, exc, kind) from exc


def limited_length(requested: int, tokenizer: Any, extra: Sequence[Any] = ()) -> int:
    """``requested`` capped by the tokenizer's declared limit and any positive ints in ``extra``
    (position-embedding sizes): positions past them are an index error, not a result."""
    limits = [requested]
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_limit, int) and 0 < tok_limit < NO_LIMIT:
        limits.append(tok_limit)
    limits += [x for x in extra if isinstance(x, int) and x > 0]
    return min(limits)

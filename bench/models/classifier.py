"""A Hugging Face sequence classifier behind a small, batch-planned inference API.

Inference runs over a length-sorted batch plan that depends only on the inputs and the batch
size, so an interrupted run can skip stored batches and recompute exactly the rest. Padding is
per batch (to the longest member), which changes nothing in the logits: attention masks hide it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.errors import ModelError
from bench.hub import ensure_hub_model
from bench.models.batching import OOMBackoff, length_sorted_batches, padding_aware_batches
from bench.models.identity import TOKENIZER_FILES, local_model_dir

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from bench.specs import ModelSpec

log = logging.getLogger(__name__)

DTYPES = ("auto", "float32", "bfloat16", "float16")
# Tokenizers without a declared limit report a huge sentinel instead of None.
_NO_LIMIT = 100_000
# Lengths are measured in chunks so a large split never holds all its token ids at once.
_LENGTH_CHUNK = 2048


def _offline() -> bool:
    # Read at call time (the hub libraries read it once at import), so a CLI --offline flag or a
    # test can still switch it on; bench.hub also probes the endpoint once, so an unreachable hub
    # means the cache only instead of ~30 s of retries.
    from transformers.utils import is_offline_mode

    from bench.hub import hub_offline

    return is_offline_mode() or hub_offline()


def _first_line(exc: BaseException) -> str:
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
        raise ModelError(f"unknown device {device!r}: {_first_line(exc)}") from exc
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
    message = _first_line(exc)
    if folder is None and isinstance(exc, OSError):
        from bench.hub import not_cached_error

        offline = not_cached_error(path)
        if offline is not None:
            return ModelError(offline)
        return ModelError(
            f"cannot load model '{path}' (not a local folder and not in the hub cache; "
            f"offline?): {message}"
        )
    if isinstance(exc, ValueError) and "Unrecognized configuration class" in str(exc):
        return ModelError(f"model {path} is not {kind}: {message}")
    return ModelError(f"cannot load model {path}: {message}")


def _check_local_folder(folder: Path, path: str, use_safetensors: bool) -> None:
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


class HFClassifier:
    """A loaded ``AutoModelForSequenceClassification`` with its tokenizer, in eval mode."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        path: str = "",
        max_length: int = 256,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.path = path
        limit = getattr(tokenizer, "model_max_length", None)
        # Never exceed what the position embeddings allow: that is an index error, not a result.
        if isinstance(limit, int) and 0 < limit < _NO_LIMIT:
            max_length = min(max_length, limit)
        self.max_length = max_length
        self._backoff: OOMBackoff | None = None

    # ---------------------------------------------------------------------------------------------
    # Loading

    @classmethod
    def load(
        cls,
        path: str,
        revision: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        trust_remote_code: bool = False,
        use_safetensors: bool = True,
        max_length: int = 256,
    ) -> HFClassifier:
        """Load a classifier from a local folder or a hub id (hub cache only when offline)."""
        folder = local_model_dir(path)
        if folder is not None:
            _check_local_folder(folder, path, use_safetensors)
        else:
            ensure_hub_model(path)  # offline and not cached: one line now, not ~30 s of retries
        resolved_device = resolve_device(device)
        dtype_name = resolve_dtype(dtype, resolved_device)

        import torch
        import transformers
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        source = str(folder) if folder is not None else path
        common: dict[str, Any] = {
            "revision": revision,
            "trust_remote_code": trust_remote_code,
            "local_files_only": folder is not None or _offline(),
        }
        # Loading warnings (e.g. "some weights were newly initialised") become a ModelError below;
        # the library's own multi-line version would only add noise.
        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()
        try:
            model, info = AutoModelForSequenceClassification.from_pretrained(
                source, use_safetensors=use_safetensors, output_loading_info=True, **common
            )
        except (OSError, ValueError, KeyError, RuntimeError, ImportError) as exc:
            raise cls._load_error(path, folder, exc) from exc
        except Exception as exc:  # safetensors' own error type, unreadable headers, ...
            raise ModelError(f"cannot read weights of model {path}: {_first_line(exc)}") from exc
        finally:
            transformers.logging.set_verbosity(verbosity)
        missing = [k for k in info.get("missing_keys", []) if k]
        if missing:
            # A base encoder loads "fine" with a random head; evaluating it would report noise.
            shown = ", ".join(sorted(missing)[:3]) + (", ..." if len(missing) > 3 else "")
            raise ModelError(
                f"model {path} is missing trained weights ({shown}); is it a base model without "
                "a classification head? fine-tune it first"
            )
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True, **common)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            message = f"cannot load the tokenizer of model {path}: {_first_line(exc)}"
            raise ModelError(message) from exc
        model = model.to(device=resolved_device, dtype=getattr(torch, dtype_name))
        return cls(model, tokenizer, path=path, max_length=max_length)

    @classmethod
    def from_spec(
        cls, spec: ModelSpec, device: str = "auto", dtype: str = "auto", max_length: int = 256
    ) -> HFClassifier:
        """:meth:`load` with the path, revision and trust settings a model spec records."""
        return cls.load(
            spec.path, device=device, dtype=dtype, max_length=max_length, **spec.load_options()
        )

    @staticmethod
    def _load_error(path: str, folder: Path | None, exc: BaseException) -> ModelError:
        return load_error(path, folder, exc, "a sequence-classification model")

    # ---------------------------------------------------------------------------------------------
    # Properties

    @property
    def labels(self) -> list[str]:
        """Output label names, in class-id order (from ``config.id2label``)."""
        id2label = self.model.config.id2label
        return [str(id2label[i]) for i in sorted(int(k) for k in id2label)]

    @property
    def num_labels(self) -> int:
        return int(self.model.config.num_labels)

    @property
    def device(self) -> str:
        """Where the model runs, e.g. ``cpu`` or ``cuda:0`` (a string, so it can be recorded)."""
        return str(self.model.device)

    @property
    def dtype(self) -> str:
        """The weights' dtype name, e.g. ``float32``."""
        return str(self.model.dtype).removeprefix("torch.")

    @property
    def effective_batch_size(self) -> int | None:
        """The batch size after any out-of-memory back-off (None before the first batch)."""
        return self._backoff.batch_size if self._backoff is not None else None

    # ---------------------------------------------------------------------------------------------
    # Inference

    def _encode(self, texts: Sequence[tuple[str, ...]], **kwargs: Any) -> Any:
        arity = {len(t) for t in texts}
        if not arity <= {1, 2} or len(arity) > 1:
            raise ValueError(f"inputs must all be single texts or all pairs, got sizes {arity}")
        first = [t[0] for t in texts]
        second = [t[1] for t in texts] if arity == {2} else None
        return self.tokenizer(first, second, truncation=True, max_length=self.max_length, **kwargs)

    def token_lengths(self, inputs: Sequence[tuple[str, ...]]) -> list[int]:
        """Tokenised length of each input after truncation (what its batch is padded to)."""
        lengths: list[int] = []
        for start in range(0, len(inputs), _LENGTH_CHUNK):
            encoded = self._encode(inputs[start : start + _LENGTH_CHUNK])
            lengths.extend(len(ids) for ids in encoded["input_ids"])
        return lengths

    def token_keys(self, inputs: Sequence[tuple[str, ...]]) -> list[tuple[int, ...]]:
        """What the model sees of each input (token ids, then token type ids, after truncation):
        equal keys give equal logits."""
        encoded = self._encode(inputs)
        types = encoded.get("token_type_ids")
        keys = []
        for i, ids in enumerate(encoded["input_ids"]):
            extra = tuple(types[i]) if types is not None else ()
            keys.append((*ids, -1, *extra))
        return keys

    def batch_plan(self, inputs: Sequence[tuple[str, ...]], batch_size: int) -> list[list[int]]:
        """The batches ``predict_batches`` runs, longest first; depends only on its arguments."""
        return length_sorted_batches(self.token_lengths(inputs), batch_size)

    def _logits(self, texts: Sequence[tuple[str, ...]]) -> np.ndarray:
        import torch

        encoded = self._encode(texts, padding="longest", return_tensors="pt")
        encoded = {k: v.to(self.model.device) for k, v in encoded.items()}
        with torch.inference_mode():
            logits = self.model(**encoded).logits
        out: np.ndarray = logits.float().cpu().numpy()
        return out

    def predict_batches(
        self,
        inputs: Sequence[tuple[str, ...]],
        batch_size: int,
        skip: set[int] | None = None,
    ) -> Iterator[tuple[list[int], np.ndarray]]:
        """Yield ``(original indices, float32 logits [b, num_labels])`` per planned batch.

        Batches whose indices are all in ``skip`` (already stored by an earlier run) are not run.
        A batch only partly in ``skip`` is recomputed whole, so every computed batch is exactly the
        one a fresh run computes; the caller ignores the indices it already has. On out-of-memory
        a batch is computed in smaller chunks (and later batches too); what is yielded is still
        the planned batch.
        """
        plan = self.batch_plan(inputs, batch_size)
        if self._backoff is None or self._backoff.batch_size > batch_size:
            self._backoff = OOMBackoff(batch_size)
        done = skip or set()
        for batch in plan:
            if done and all(i in done for i in batch):
                continue
            chunks = self._backoff.run(
                lambda chunk: self._logits([inputs[i] for i in chunk]), batch
            )
            yield batch, np.concatenate(chunks, axis=0).astype(np.float32, copy=False)

    def classify_padding_aware(
        self,
        inputs: Sequence[tuple[str, ...]],
        max_batch: int = 64,
        overhead_tokens: int = 64,
    ) -> np.ndarray:
        """Logits ``[n, num_labels]`` in input order, tokenising once and batching by cost.

        For mixed-length request sets (attack queries gathered from many examples): batches come
        from :func:`padding_aware_batches`, so short texts are not padded to the longest request.
        """
        import torch

        if not inputs:
            return np.zeros((0, self.num_labels), dtype=np.float32)
        encoded = self._encode(inputs)
        ids = encoded["input_ids"]
        plan = padding_aware_batches([len(x) for x in ids], max_batch, overhead_tokens)
        names = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in encoded]
        pad_id = self.tokenizer.pad_token_id or 0
        left = self.tokenizer.padding_side == "left"
        out = np.zeros((len(inputs), self.num_labels), dtype=np.float32)

        def run(batch: list[int]) -> np.ndarray:
            width = max(len(ids[i]) for i in batch)
            tensors = {}
            for name in names:
                fill = pad_id if name == "input_ids" else 0
                rows = []
                for i in batch:
                    values = list(encoded[name][i])
                    padding = [fill] * (width - len(values))
                    rows.append(padding + values if left else values + padding)
                tensors[name] = torch.tensor(rows, dtype=torch.long, device=self.model.device)
            if "attention_mask" not in tensors:
                mask = [[1] * len(ids[i]) + [0] * (width - len(ids[i])) for i in batch]
                tensors["attention_mask"] = torch.tensor(mask, device=self.model.device)
            with torch.inference_mode():
                logits = self.model(**tensors).logits
            result: np.ndarray = logits.float().cpu().numpy()
            return result

        if self._backoff is None or self._backoff.batch_size > max_batch:
            self._backoff = OOMBackoff(max_batch)
        for batch in plan:
            out[batch] = np.concatenate(self._backoff.run(run, batch), axis=0)
        return out

    def classify(self, inputs: Sequence[tuple[str, ...]], batch_size: int = 32) -> np.ndarray:
        """Logits ``[n, num_labels]`` (float32) in the original order of ``inputs``."""
        out = np.zeros((len(inputs), self.num_labels), dtype=np.float32)
        for indices, logits in self.predict_batches(inputs, batch_size):
            out[indices] = logits
        return out

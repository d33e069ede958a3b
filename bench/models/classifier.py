"""A Hugging Face sequence classifier (PyTorch) behind the batch-planned inference API of
:class:`~bench.models.tokenized.TokenizedClassifier`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from bench.hub import ensure_hub_model
from bench.models.hf_loading import (
    check_local_folder,
    hub_options,
    limited_length,
    load_tokenizer,
    load_weights,
    resolve_device,
    resolve_dtype,
)
from bench.models.identity import local_model_dir
from bench.models.tokenized import TokenizedClassifier

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from bench.specs import ModelSpec

# Kept importable from here: older code and users' scripts import them from this module.
__all__ = ["HFClassifier", "resolve_device", "resolve_dtype"]


class HFClassifier(TokenizedClassifier):
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
        self.max_length = limited_length(max_length, tokenizer)
        self._backoff = None

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
            check_local_folder(folder, path, use_safetensors)
        else:
            ensure_hub_model(path)  # offline and not cached: one line now, not ~30 s of retries
        resolved_device = resolve_device(device)
        dtype_name = resolve_dtype(dtype, resolved_device)

        import torch
        from transformers import AutoModelForSequenceClassification

        source = str(folder) if folder is not None else path
        common = hub_options(folder, revision, trust_remote_code)
        model = load_weights(
            AutoModelForSequenceClassification,
            source,
            path,
            folder,
            "a sequence-classification model",
            missing_hint="; is it a base model without a classification head? fine-tune it first",
            use_safetensors=use_safetensors,
            **common,
        )
        tokenizer = load_tokenizer(source, path, **common)
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
    def torch_module(self) -> Any:
        return self.model

    # ---------------------------------------------------------------------------------------------
    # Inference

    def _forward(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        device = self.model.device
        tensors = {k: torch.from_numpy(v).to(device) for k, v in arrays.items()}
        with torch.inference_mode():
            logits = self.model(**tensors).logits
        out: np.ndarray = logits.float().cpu().numpy()
        return out

"""What every tokenizer-driven sequence classifier shares, whatever runs its forward pass.

Inference runs over a length-sorted batch plan that depends only on the inputs and the batch
size, so an interrupted run can skip stored batches and recompute exactly the rest. Padding is
per batch (to the longest member), which changes nothing in the logits: attention masks hide it.
A backend (PyTorch, ONNX Runtime, ...) supplies only ``_forward``: padded integer arrays in,
float32 logits out.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from bench.models.batching import (
    OOMBackoff,
    backoff_for,
    length_sorted_batches,
    padding_aware_batches,
)

# Lengths are measured in chunks so a large split never holds all its token ids at once.
_LENGTH_CHUNK = 2048
# Inputs a model may take, in the order tokenizers produce them.
INPUT_NAMES = ("input_ids", "token_type_ids", "attention_mask")


class TokenizedClassifier:
    """Batch planning, dynamic padding and query keys over a tokenizer; ``_forward`` is the
    backend's. Subclasses set ``tokenizer`` and ``max_length`` and implement ``labels``."""

    tokenizer: Any
    max_length: int
    path: str = ""
    _backoff: OOMBackoff | None = None

    # -- what a backend provides -----------------------------------------------------------

    @property
    def labels(self) -> list[str]:
        """Output label names, in class-id order."""
        raise NotImplementedError

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def device(self) -> str:
        return "cpu"

    @property
    def dtype(self) -> str:
        return "float32"

    @property
    def torch_module(self) -> Any:
        """The underlying torch module, for libraries that want one (TextAttack's wrapper);
        None when the model is not a torch module."""
        return None

    def _forward(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """Logits ``[b, num_labels]`` (float32) for padded int64 arrays named as in
        ``INPUT_NAMES`` (``attention_mask`` always present)."""
        raise NotImplementedError

    # -- tokens ----------------------------------------------------------------------------

    @property
    def effective_batch_size(self) -> int | None:
        """The batch size after any out-of-memory back-off (None before the first batch)."""
        return self._backoff.batch_size if self._backoff is not None else None

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

    # -- inference -------------------------------------------------------------------------

    def _logits(self, texts: Sequence[tuple[str, ...]]) -> np.ndarray:
        encoded = self._encode(texts, padding="longest", return_tensors="np")
        arrays = {k: np.asarray(encoded[k], dtype=np.int64) for k in INPUT_NAMES if k in encoded}
        return self._forward(arrays)

    def _fresh_backoff(self, batch_size: int) -> OOMBackoff:
        self._backoff = backoff_for(self._backoff, batch_size)
        return self._backoff

    def predict_batches(
        self,
        inputs: Sequence[tuple[str, ...]],
        batch_size: int,
        skip: set[int] | None = None,
        plan: Sequence[Sequence[int]] | None = None,
    ) -> Iterator[tuple[list[int], np.ndarray]]:
        """Yield ``(original indices, float32 logits [b, num_labels])`` per planned batch.

        Batches whose indices are all in ``skip`` (already stored by an earlier run) are not run.
        A batch only partly in ``skip`` is recomputed whole, so every computed batch is exactly the
        one a fresh run computes; the caller ignores the indices it already has. On out-of-memory
        a batch is computed in smaller chunks (and later batches too); what is yielded is still
        the planned batch. ``plan`` replaces ``batch_plan(inputs, batch_size)`` when the caller
        has it already.
        """
        batches = plan if plan is not None else self.batch_plan(inputs, batch_size)
        backoff = self._fresh_backoff(batch_size)
        done = skip or set()
        for batch in batches:
            if done and all(i in done for i in batch):
                continue
            chunks = backoff.run(
                lambda chunk: self._logits([inputs[i] for i in chunk]), list(batch)
            )
            yield list(batch), np.concatenate(chunks, axis=0).astype(np.float32, copy=False)

    def classify(self, inputs: Sequence[tuple[str, ...]], batch_size: int = 32) -> np.ndarray:
        """Logits ``[n, num_labels]`` (float32) in the original order of ``inputs``."""
        out = np.zeros((len(inputs), self.num_labels), dtype=np.float32)
        for indices, logits in self.predict_batches(inputs, batch_size):
            out[indices] = logits
        return out

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
        if not inputs:
            return np.zeros((0, self.num_labels), dtype=np.float32)
        encoded = self._encode(inputs)
        ids = encoded["input_ids"]
        plan = padding_aware_batches([len(x) for x in ids], max_batch, overhead_tokens)
        names = [k for k in INPUT_NAMES if k in encoded]
        pad_id = self.tokenizer.pad_token_id or 0
        left = self.tokenizer.padding_side == "left"
        out = np.zeros((len(inputs), self.num_labels), dtype=np.float32)

        def run(batch: list[int]) -> np.ndarray:
            width = max(len(ids[i]) for i in batch)
            arrays = {}
            for name in names:
                fill = pad_id if name == "input_ids" else 0
                rows = []
                for i in batch:
                    values = list(encoded[name][i])
                    padding = [fill] * (width - len(values))
                    rows.append(padding + values if left else values + padding)
                arrays[name] = np.asarray(rows, dtype=np.int64)
            if "attention_mask" not in arrays:
                mask = [[1] * len(ids[i]) + [0] * (width - len(ids[i])) for i in batch]
                arrays["attention_mask"] = np.asarray(mask, dtype=np.int64)
            return self._forward(arrays)

        backoff = self._fresh_backoff(max_batch)
        for batch in plan:
            out[batch] = np.concatenate(backoff.run(run, batch), axis=0)
        return out

"""The victim model as TextAttack sees it: the spine's classifier behind a query cache.

Stock ``HuggingFaceModelWrapper`` pads every query to the tokenizer's maximum length (512 for
BERT-style models) and TextAttack batches only one search step of one example. Here queries go
through :class:`ModelQuery`: de-duplicated, answered from a cache when seen before, and computed
by the classifier backend with dynamic padding over length-sorted batches. Outputs are in the task's
label order, so an attack's ground-truth label is a task label id.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.attacks.compat import load_textattack

if TYPE_CHECKING:
    from bench.backends import Classifier
    from bench.models.labels import LabelAlignment

_ta = load_textattack()

Inputs = tuple[str, ...]


def _permutation(matrix: np.ndarray) -> bool:
    return (
        matrix.shape[0] == matrix.shape[1]
        and bool(np.all(matrix.sum(axis=0) == 1))
        and bool(np.all(matrix.sum(axis=1) == 1))
    )


@dataclass
class QueryStats:
    queries: int = 0  # texts asked for (after TextAttack's own per-example cache)
    cache_hits: int = 0
    computed: int = 0  # texts that went through the model
    forward_batches: int = 0


class ModelQuery:
    """Texts -> scores in task label order, with a cache shared by every attack of a run.

    Scores are logits (re-ordered to the task's labels) when model and task labels correspond one
    to one, as TextAttack's stock wrapper returns; when several model labels collapse into one
    task label they are the summed probabilities, which TextAttack uses as they are.
    """

    def __init__(
        self,
        classifier: Classifier,
        alignment: LabelAlignment,
        batch_size: int = 64,
        cache_size: int = 1 << 20,
    ) -> None:
        self.classifier = classifier
        self.alignment = alignment
        self.batch_size = batch_size
        self.cache_size = cache_size
        self._cache: dict[Inputs, np.ndarray] = {}
        self._by_tokens: dict[tuple[int, ...], np.ndarray] = {}
        self._logits_only = _permutation(alignment.matrix)
        self.stats = QueryStats()

    def _scores(self, logits: np.ndarray) -> np.ndarray:
        if self._logits_only:
            out: np.ndarray = (logits @ self.alignment.matrix.astype(np.float32)).astype(np.float32)
            return out
        return self.alignment.to_task_probs(logits).astype(np.float32)

    def __call__(self, inputs: Sequence[Inputs]) -> np.ndarray:
        self.stats.queries += len(inputs)
        missing: list[Inputs] = []
        seen: set[Inputs] = set()
        for item in inputs:
            if item not in self._cache and item not in seen:
                seen.add(item)
                missing.append(item)
        self.stats.cache_hits += len(inputs) - len(missing)
        if missing:
            if len(self._cache) + len(missing) > self.cache_size:
                # Rare; a bounded cache must not grow without limit.
                self._cache.clear()
                self._by_tokens.clear()
            # Texts that tokenise identically (case, accents, characters the vocabulary lacks)
            # must get identical scores, whichever batch they come in: float rounding differs
            # between batch shapes, and would otherwise break exact ties between such candidates
            # differently from run to run (e.g. in a resumed run).
            keys = self.classifier.token_keys(missing)
            fresh: dict[tuple[int, ...], Inputs] = {}
            for item, key in zip(missing, keys, strict=True):
                if key not in self._by_tokens and key not in fresh:
                    fresh[key] = item
            if fresh:
                logits = self.classifier.classify_padding_aware(
                    list(fresh.values()), max_batch=self.batch_size
                )
                self.stats.computed += len(fresh)
                self.stats.forward_batches += 1
                for key, row in zip(fresh, self._scores(logits), strict=True):
                    self._by_tokens[key] = row
            for item, key in zip(missing, keys, strict=True):
                self._cache[item] = self._by_tokens[key]
        return np.stack([self._cache[item] for item in inputs])


class ClassifierWrapper(_ta.models.wrappers.ModelWrapper):  # type: ignore[name-defined]
    """A TextAttack ``ModelWrapper`` that forwards queries to ``query`` (a ModelQuery, or the
    scheduler in front of one)."""

    def __init__(self, query: Callable[[list[Inputs]], Any], model: Any = None) -> None:
        self.query = query
        # TextAttack reads ``.model`` (to move it between devices, for gradient attacks).
        self.model = model

    def __call__(self, text_input_list: list[str | tuple[str, ...]]) -> Any:
        inputs = [t if isinstance(t, tuple) else (t,) for t in text_input_list]
        out = self.query(inputs)
        return np.asarray(out, dtype=np.float32) if not isinstance(out, np.ndarray) else out

    def to(self, device: Any) -> ClassifierWrapper:  # TextAttack calls it when CUDA exists
        return self

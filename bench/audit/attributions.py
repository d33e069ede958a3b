"""Integrated gradients on a classifier's word embeddings (Captum), and how faithful they are.

The attributed output is the model's probability of one task label (softmax over the model's
labels, routed to the task's labels as evaluation routes them), so attributions of a text sum,
up to the convergence delta Captum reports, to that probability at the text minus at the
baseline. The baseline keeps the special tokens ([CLS], [SEP]) and replaces every other word
piece by the padding token, so position and segment embeddings are the same at both ends of
the path and only the words are attributed.

Faithfulness (DeYoung et al. 2020, ERASER): with the word pieces ranked by attribution,
comprehensiveness is the drop of the probability when the top k% are deleted, sufficiency the
drop when only they are kept, each averaged over k in ``AOPC_FRACTIONS`` (the area over the
perturbation curve). The same numbers for a seeded random ranking are the reference: an
explanation is only as good as its margin over random.

torch and Captum are imported inside the functions: this module is cheap to import.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.records import Explanation, TokenAttribution

# ERASER's k values (share of word pieces), rounded up to at least one piece.
AOPC_FRACTIONS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.2, 0.5)
# Gauss-Legendre steps along the path (Captum's default method); the completeness test checks
# that the convergence delta stays below 0.05 at this count.
DEFAULT_STEPS = 50


@dataclass(frozen=True)
class _Encoded:
    ids: list[int]
    types: list[int] | None
    special: list[bool]


class Attributor:
    """Integrated gradients and faithfulness for one loaded classifier (a torch module with a
    tokenizer), attributing the probability of a task label through ``routing`` (model labels x
    task labels, 0/1; identity when the labels are the task's)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        routing: np.ndarray,
        *,
        steps: int = DEFAULT_STEPS,
        max_length: int = 256,
        fractions: Sequence[float] = AOPC_FRACTIONS,
    ) -> None:
        import torch

        self.model = model
        self.tokenizer = tokenizer
        self.steps = steps
        self.max_length = max_length
        self.fractions = tuple(fractions)
        param = next(model.parameters())
        self.device = param.device
        self.routing = torch.as_tensor(np.asarray(routing), dtype=torch.float32, device=self.device)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else tokenizer.unk_token_id or 0)

    # -- encoding -------------------------------------------------------------------------

    def encode(self, inputs: Sequence[str]) -> _Encoded:
        first, second = inputs[0], (inputs[1] if len(inputs) > 1 else None)
        enc = self.tokenizer(first, second, truncation=True, max_length=self.max_length)
        ids = list(enc["input_ids"])
        types = list(enc["token_type_ids"]) if "token_type_ids" in enc else None
        special = self.tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True)
        return _Encoded(ids, types, [bool(s) for s in special])

    def _batch(self, seqs: Sequence[tuple[list[int], list[int] | None]]) -> dict[str, Any]:
        import torch

        width = max(len(ids) for ids, _ in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        types = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, (s, t) in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
            if t is not None:
                types[i, : len(t)] = torch.tensor(t)
        out = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}
        if seqs[0][1] is not None:
            out["token_type_ids"] = types.to(self.device)
        return out

    def _prob(self, logits: Any, target: int) -> Any:
        import torch

        probs = torch.softmax(logits.float(), dim=-1) @ self.routing
        return probs[:, target]

    def probabilities(
        self, seqs: Sequence[tuple[list[int], list[int] | None]], target: int
    ) -> np.ndarray:
        import torch

        batch = self._batch(seqs)
        with torch.inference_mode():
            out = self._prob(self.model(**batch).logits, target)
        return np.asarray(out.detach().cpu().numpy(), dtype=np.float64)

    # -- integrated gradients -------------------------------------------------------------

    def attribute(self, inputs: Sequence[str], target: int) -> tuple[TokenAttribution, _Encoded]:
        """Integrated gradients of ``target``'s probability for one text (or pair)."""
        import torch
        from captum.attr import LayerIntegratedGradients

        enc = self.encode(inputs)
        ids = torch.tensor([enc.ids], device=self.device)
        baseline = torch.tensor(
            [[t if s else self.pad_id for t, s in zip(enc.ids, enc.special, strict=True)]],
            device=self.device,
        )
        mask = torch.ones_like(ids)
        types = torch.tensor([enc.types], device=self.device) if enc.types is not None else None

        def forward(input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                kwargs["token_type_ids"] = token_type_ids
            return self._prob(self.model(**kwargs).logits, target)

        extra = (mask,) if types is None else (mask, types)
        lig = LayerIntegratedGradients(forward, self.model.get_input_embeddings())
        with torch.enable_grad():
            attributions, delta = lig.attribute(
                inputs=ids,
                baselines=baseline,
                additional_forward_args=extra,
                n_steps=self.steps,
                internal_batch_size=self.steps,
                return_convergence_delta=True,
            )
        scores = attributions.sum(dim=-1)[0].detach().cpu().numpy().astype(np.float64)
        with torch.inference_mode():
            at_input = float(forward(ids, *extra)[0])
            at_baseline = float(forward(baseline, *extra)[0])
        tokens = self.tokenizer.convert_ids_to_tokens(enc.ids)
        return (
            TokenAttribution(
                tokens=[str(t) for t in tokens],
                scores=[float(x) for x in scores],
                delta=float(delta.reshape(-1)[0]),
                output=at_input,
                baseline_output=at_baseline,
            ),
            enc,
        )

    # -- faithfulness ---------------------------------------------------------------------

    def aopc(
        self, enc: _Encoded, scores: Sequence[float], target: int, rng: np.random.Generator
    ) -> tuple[float, float, float, float]:
        """(comprehensiveness, sufficiency) of ranking the word pieces by ``scores``, then the
        same for a random ranking from ``rng``; NaN for a text without word pieces."""
        content = [i for i, s in enumerate(enc.special) if not s]
        if not content:
            return (math.nan,) * 4
        ranked = sorted(content, key=lambda i: (-scores[i], i))
        shuffled = [content[j] for j in rng.permutation(len(content))]
        seqs: list[tuple[list[int], list[int] | None]] = [(enc.ids, enc.types)]
        for order in (ranked, shuffled):
            for f in self.fractions:
                k = min(len(content), max(1, math.ceil(f * len(content))))
                top = set(order[:k])
                removed = [i for i in range(len(enc.ids)) if i not in top]
                kept = [i for i in range(len(enc.ids)) if enc.special[i] or i in top]
                seqs += [self._select(enc, removed), self._select(enc, kept)]
        probs = self.probabilities(seqs, target)
        full = probs[0]
        per = probs[1:].reshape(2, len(self.fractions), 2)  # ranking x fraction x (comp, suff)
        comp = full - per[:, :, 0]
        suff = full - per[:, :, 1]
        return (
            float(comp[0].mean()),
            float(suff[0].mean()),
            float(comp[1].mean()),
            float(suff[1].mean()),
        )

    @staticmethod
    def _select(enc: _Encoded, keep: list[int]) -> tuple[list[int], list[int] | None]:
        ids = [enc.ids[i] for i in keep]
        types = [enc.types[i] for i in keep] if enc.types is not None else None
        return ids, types

    # -- one adversarial example ----------------------------------------------------------

    def explain(
        self, original: Sequence[str], adversarial: Sequence[str], target: int, seed: int
    ) -> Explanation:
        """Both texts attributed for ``target`` (the original prediction); faithfulness on the
        original text."""
        started = time.perf_counter()
        before, enc = self.attribute(original, target)
        after, _ = self.attribute(adversarial, target)
        comp, suff, comp_r, suff_r = self.aopc(
            enc, before.scores, target, np.random.default_rng(seed)
        )
        return Explanation(
            target=target,
            original=before,
            adversarial=after,
            comprehensiveness=comp,
            sufficiency=suff,
            comprehensiveness_random=comp_r,
            sufficiency_random=suff_r,
            seconds=time.perf_counter() - started,
        )

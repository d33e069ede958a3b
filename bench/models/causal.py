"""A Hugging Face causal language model for zero-/few-shot prompting: loglikelihoods and generation.

Token boundary rule (how a ``(context, continuation)`` pair becomes tokens). The full string
``context + continuation`` is encoded once, whole, exactly as the tokenizer encodes it; the
context alone is encoded too. The context tokens are the longest common prefix of the two token
sequences and every token after it is scored. So a continuation that starts with a space is
scored on the tokenizer's own ``" word"`` token, and a context that ends with a space loses that
trailing space token when the full string merges it into the next word: the merged token is
scored (as part of the continuation), never the unmerged space. No whitespace is moved between
context and continuation. In the rare case that the tokenizer re-segments further back than the
last context token, the scored span starts earlier and includes some context characters; it
never leaves continuation characters unscored.

A BOS token is put in front when the tokenizer adds one to ordinary text (Llama-style); an empty
context without BOS is conditioned on the EOS token instead, as there must be something to predict
the first token from. Sequences longer than ``max_length`` lose tokens from the left.

Batches follow a length-sorted plan (longest first) that depends only on the requests and the
batch size; padding is on the right for scoring (attention masks hide it, positions of real
tokens do not move) and on the left for generation (new tokens must follow every prompt directly).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from bench.errors import ModelError
from bench.hub import ensure_hub_model
from bench.models.batching import OOMBackoff, backoff_for, length_sorted_batches
from bench.models.hf_loading import (
    check_local_folder,
    hub_options,
    limited_length,
    load_tokenizer,
    load_weights,
    read_config,
    resolve_device,
    resolve_dtype,
)
from bench.models.identity import local_model_dir

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from bench.specs import ModelSpec

log = logging.getLogger(__name__)

_DEFAULT_MAX_LENGTH = 2048
# Model classes whose names mark a language-modelling head that predicts the next token.
_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")


def _causal_architectures() -> set[str]:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    names: set[str] = set()
    for value in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values():
        names.update([value] if isinstance(value, str) else value)
    return names


def _check_causal(config: Any, path: str) -> None:
    """Refuse a config that does not describe a next-token predictor.

    ``AutoModelForCausalLM`` happily builds a causal head for an encoder like BERT, with random
    weights; the saved ``architectures`` say what the checkpoint was actually trained as.
    """
    archs = list(getattr(config, "architectures", None) or [])
    if archs:
        known = _causal_architectures()
        if not any(a in known or a.endswith(_CAUSAL_SUFFIXES) for a in archs):
            raise ModelError(
                f"model {path} is not a causal language model: its architecture is "
                f"{', '.join(archs)}"
            )
    elif getattr(config, "is_encoder_decoder", False):
        raise ModelError(f"model {path} is not a causal language model: it is encoder-decoder")


def _read_config(path: str, revision: str | None, trust_remote_code: bool) -> Any:
    folder = local_model_dir(path)
    if folder is not None and not (folder / "config.json").is_file():
        raise ModelError(f"model folder {path} has no config.json")
    if folder is None:
        ensure_hub_model(path)  # offline and not cached: one line now, not ~30 s of retries
    source = str(folder) if folder is not None else path
    return read_config(source, path, folder, hub_options(folder, revision, trust_remote_code))


def is_causal_lm(path: str, revision: str | None = None, trust_remote_code: bool = False) -> bool:
    """Whether the model at ``path`` is a next-token predictor, from its config alone (no
    weights are read); decides which adapter a model given on the command line gets."""
    config = _read_config(path, revision, trust_remote_code)
    try:
        _check_causal(config, path)
    except ModelError:
        return False
    return bool(getattr(config, "architectures", None))


def require_causal_lm(
    path: str, revision: str | None = None, trust_remote_code: bool = False
) -> None:
    """Refuse, before any weights are read, a model that is not a causal language model."""
    _check_causal(_read_config(path, revision, trust_remote_code), path)


class CausalLM:
    """A loaded ``AutoModelForCausalLM`` with its tokenizer, in eval mode."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        path: str = "",
        max_length: int | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.path = path
        # Positions past the embedding table are an index error (or silent garbage), not a result.
        self.max_length = limited_length(
            max_length or _DEFAULT_MAX_LENGTH,
            tokenizer,
            [getattr(model.config, "max_position_embeddings", None)],
        )
        self._bos = self._detect_bos()
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
        max_length: int | None = None,
        gguf_file: str | None = None,
    ) -> CausalLM:
        """Load a causal LM from a local folder or a hub id (hub cache only when offline).

        ``gguf_file`` names a GGUF file inside the folder; it is dequantised on every load, so
        prefer :func:`bench.models.gguf.convert_gguf` once for repeated use.
        """
        folder = local_model_dir(path)
        if folder is None:
            ensure_hub_model(path)
        if folder is not None and gguf_file is None:
            check_local_folder(folder, path, use_safetensors)
        if folder is not None and gguf_file is not None and not (folder / gguf_file).is_file():
            raise ModelError(f"model folder {path} has no GGUF file {gguf_file}")
        resolved_device = resolve_device(device)
        dtype_name = resolve_dtype(dtype, resolved_device)

        import torch
        from transformers import AutoModelForCausalLM

        source = str(folder) if folder is not None else path
        common = hub_options(folder, revision, trust_remote_code)
        if gguf_file is not None:
            common["gguf_file"] = gguf_file
        # The config first: refusing an encoder here costs no weight loading.
        config = read_config(source, path, folder, common, "a causal language model")
        _check_causal(config, path)
        weights: dict[str, Any] = (
            {} if gguf_file is not None else {"use_safetensors": use_safetensors}
        )
        # Tied output embeddings are reported missing by some versions although they are loaded.
        tied = bool(getattr(config, "tie_word_embeddings", False))
        model = load_weights(
            AutoModelForCausalLM,
            source,
            path,
            folder,
            "a causal language model",
            ignore_missing=lambda key: tied and "lm_head" in key,
            config=config,
            dtype=getattr(torch, dtype_name),
            **weights,
            **common,
        )
        tokenizer = load_tokenizer(source, path, **common)
        model = model.to(device=resolved_device)
        return cls(model, tokenizer, path=path, max_length=max_length)

    @classmethod
    def from_spec(
        cls,
        spec: ModelSpec,
        device: str = "auto",
        dtype: str = "auto",
        max_length: int | None = None,
    ) -> CausalLM:
        """:meth:`load` with the path, revision and trust settings a model spec records."""
        return cls.load(
            spec.path, device=device, dtype=dtype, max_length=max_length, **spec.load_options()
        )

    # ---------------------------------------------------------------------------------------------
    # Properties

    @property
    def device(self) -> str:
        return str(self.model.device)

    @property
    def dtype(self) -> str:
        return str(self.model.dtype).removeprefix("torch.")

    @property
    def effective_batch_size(self) -> int | None:
        """The batch size after any out-of-memory back-off (None before the first batch)."""
        return self._backoff.batch_size if self._backoff is not None else None

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    # ---------------------------------------------------------------------------------------------
    # Tokens

    def _detect_bos(self) -> int | None:
        """The BOS id when the tokenizer puts it in front of ordinary text, else None."""
        bos = self.tokenizer.bos_token_id
        if bos is None:
            return None
        ids = self.tokenizer("a", add_special_tokens=True)["input_ids"]
        return bos if ids and ids[0] == bos else None

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _prefix(self, context_ids: list[int]) -> list[int]:
        if self._bos is not None and (not context_ids or context_ids[0] != self._bos):
            return [self._bos]
        if not context_ids:
            eos = self.tokenizer.eos_token_id
            if eos is None:
                raise ModelError(
                    f"model {self.path} has neither BOS nor EOS to start an empty context"
                )
            return [int(eos)]
        return []

    def split_tokens(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """``(context ids, continuation ids)`` by the module's boundary rule, prefix included."""
        whole = self._ids(context + continuation)
        alone = self._ids(context)
        common = 0
        for a, b in zip(alone, whole, strict=False):
            if a != b:
                break
            common += 1
        context_ids = whole[:common]
        return self._prefix(context_ids) + context_ids, whole[common:]

    # ---------------------------------------------------------------------------------------------
    # Scoring

    def loglikelihood(
        self,
        requests: Sequence[tuple[str, str]],
        batch_size: int = 8,
        share_prefix: bool = True,
    ) -> list[tuple[float, bool, int]]:
        """Per ``(context, continuation)``: (sum of continuation log-probs, greedy, n tokens).

        ``greedy`` is True when every continuation token is the argmax at its position. Results
        are in input order and do not depend on ``batch_size`` beyond float rounding.

        With ``share_prefix``, requests with the same context (a question's answer choices) run
        the tokens they share through the model once: a first pass over each question's common
        prefix keeps its key/value cache, a second pass scores every choice's remaining tokens
        on top of it. The numbers are those of one full pass per request up to float rounding;
        a few-shot question with six choices costs little more than one forward pass instead of
        six. ``batch_size`` counts requests (answer choices) in both cases.
        """
        # Model input is the sequence minus its last token; the targets are shifted by one.
        seqs: list[list[int]] = []
        n_cont: list[int] = []
        n_ctx: list[int] = []
        truncated: list[bool] = []
        for context, continuation in requests:
            ctx, cont = self.split_tokens(context, continuation)
            full = ctx + cont
            # Left truncation: max_length input positions predict the last max_length tokens.
            seqs.append(full[-(self.max_length + 1) :])
            truncated.append(len(full) > self.max_length + 1)
            n_cont.append(min(len(cont), self.max_length))
            n_ctx.append(len(ctx))
        results: list[tuple[float, bool, int]] = [(0.0, True, 0)] * len(requests)
        todo = [i for i in range(len(requests)) if n_cont[i] > 0]
        self._backoff = backoff_for(self._backoff, batch_size)

        groups: list[_Group] = []
        alone = todo
        if share_prefix:
            groups, alone = _shared_groups(requests, todo, seqs, n_ctx, truncated)

        def run(chunk: list[int]) -> list[tuple[float, bool, int]]:
            return self._score([seqs[i] for i in chunk], [n_cont[i] for i in chunk])

        for batch in length_sorted_batches([len(seqs[i]) for i in alone], batch_size):
            indices = [alone[j] for j in batch]
            scored = [r for part in self._backoff.run(run, indices) for r in part]
            for i, result in zip(indices, scored, strict=True):
                results[i] = result

        def run_groups(chunk: list[int]) -> list[list[tuple[float, bool, int]]]:
            return self._score_shared([groups[g] for g in chunk], seqs, n_cont)

        for batch in _group_batches(groups, seqs, batch_size):
            scored_groups = [g for part in self._backoff.run(run_groups, batch) for g in part]
            for g, scored in zip(batch, scored_groups, strict=True):
                for i, result in zip(groups[g].members, scored, strict=True):
                    results[i] = result
        return results

    def _forward(self, keep: list[int] | None = None, **inputs: Any) -> Any:
        """The model's output, computing vocabulary logits only at positions ``keep`` when the
        model accepts ``logits_to_keep`` (the output projection is a large share of the cost)."""
        if keep is not None and self._keeps_logits:
            import torch

            index = torch.tensor(keep, dtype=torch.long, device=self.model.device)
            return self.model(**inputs, logits_to_keep=index)
        out = self.model(**inputs)
        if keep is not None:
            out.logits = out.logits[:, keep]
        return out

    @cached_property
    def _keeps_logits(self) -> bool:
        return "logits_to_keep" in inspect.signature(self.model.forward).parameters

    def _spans(
        self, logits: Any, rows: Sequence[tuple[list[int], int, int]]
    ) -> list[tuple[float, bool, int]]:
        """Per ``(targets, first logit column, n)``: the continuation's score from ``logits``."""
        import torch

        out: list[tuple[float, bool, int]] = []
        for row, (targets, first, n) in enumerate(rows):
            span = torch.log_softmax(logits[row, first : first + n].float(), dim=-1)
            target = torch.tensor(targets, device=span.device)
            logprob = span.gather(1, target[:, None]).sum().item()
            greedy = bool((span.argmax(dim=-1) == target).all().item())
            out.append((float(logprob), greedy, n))
        return out

    def _score(self, seqs: list[list[int]], n_cont: list[int]) -> list[tuple[float, bool, int]]:
        import torch

        width = max(len(s) for s in seqs) - 1
        ids = torch.full((len(seqs), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            ids[row, : len(seq) - 1] = torch.tensor(seq[:-1])
            mask[row, : len(seq) - 1] = 1
        # Right padding puts each row's continuation at its own positions; the logits kept are
        # their union, and each row reads its span through a column map.
        wanted = sorted(
            {
                p
                for seq, n in zip(seqs, n_cont, strict=True)
                for p in range(len(seq) - 1 - n, len(seq) - 1)
            }
        )
        column = {p: c for c, p in enumerate(wanted)}
        device = self.model.device
        with torch.inference_mode():
            logits = self._forward(
                wanted, input_ids=ids.to(device), attention_mask=mask.to(device)
            ).logits
            # Columns of one row's span are consecutive: its positions are, and so is the union.
            rows = [
                (seq[-n:], column[len(seq) - 1 - n], n) for seq, n in zip(seqs, n_cont, strict=True)
            ]
            return self._spans(logits, rows)

    def _score_shared(
        self, groups: Sequence[_Group], seqs: list[list[int]], n_cont: list[int]
    ) -> list[list[tuple[float, bool, int]]]:
        """Score every member of each group: the shared prefix once, then the members' rest."""
        import torch

        device = self.model.device
        width = max(g.shared for g in groups)
        ids = torch.full((len(groups), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(groups), width), dtype=torch.long)
        for row, g in enumerate(groups):
            ids[row, : g.shared] = torch.tensor(seqs[g.members[0]][: g.shared])
            mask[row, : g.shared] = 1
        members = [(row, i) for row, g in enumerate(groups) for i in g.members]
        # Each member's input after the prefix: its own tokens up to (not including) the last.
        rests = [seqs[i][groups[row].shared : -1] for row, i in members]
        rest_width = max(len(r) for r in rests)
        rest_ids = torch.full((len(members), rest_width), self._pad_id, dtype=torch.long)
        rest_mask = torch.zeros((len(members), rest_width), dtype=torch.long)
        positions = torch.zeros((len(members), rest_width), dtype=torch.long)
        for j, ((row, _), rest) in enumerate(zip(members, rests, strict=True)):
            rest_ids[j, : len(rest)] = torch.tensor(rest)
            rest_mask[j, : len(rest)] = 1
            # Real positions continue after the group's own prefix, not after the padded width.
            positions[j] = groups[row].shared + torch.arange(rest_width)
        wanted = sorted(
            {
                p
                for (_, i), rest in zip(members, rests, strict=True)
                for p in range(len(rest) - n_cont[i], len(rest))
            }
        )
        column = {p: c for c, p in enumerate(wanted)}
        owner = torch.tensor([row for row, _ in members], dtype=torch.long, device=device)
        with torch.inference_mode():
            prefix = self._forward(
                [width - 1],
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                use_cache=True,
            )
            cache = prefix.past_key_values
            cache.batch_select_indices(owner)
            logits = self._forward(
                wanted,
                input_ids=rest_ids.to(device),
                attention_mask=torch.cat([mask.to(device)[owner], rest_mask.to(device)], dim=1),
                position_ids=positions.to(device),
                past_key_values=cache,
                use_cache=True,
            ).logits
            rows = [
                (seqs[i][-n_cont[i] :], column[len(rest) - n_cont[i]], n_cont[i])
                for (_, i), rest in zip(members, rests, strict=True)
            ]
            flat = self._spans(logits, rows)
        out: list[list[tuple[float, bool, int]]] = []
        pos = 0
        for g in groups:
            out.append(flat[pos : pos + len(g.members)])
            pos += len(g.members)
        return out

    @property
    def _pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad) if pad is not None else 0

    def score_choices(
        self, context: str, choices: Sequence[str], batch_size: int = 8
    ) -> tuple[int, int, list[float]]:
        """``(acc index, acc_norm index, loglikelihoods)`` for one multiple-choice question.

        ``acc_norm`` divides each loglikelihood by the choice's length in characters (see
        :func:`choose`). Ties go to the lowest index.
        """
        if not choices:
            raise ValueError("score_choices needs at least one choice")
        logliks = [
            ll for ll, _, _ in self.loglikelihood([(context, c) for c in choices], batch_size)
        ]
        acc, acc_norm = choose(logliks, choices)
        return acc, acc_norm, logliks

    # ---------------------------------------------------------------------------------------------
    # Generation

    def apply_chat_template(
        self, messages: Sequence[dict[str, str]], use_template: bool = True
    ) -> str:
        """The prompt text for ``messages`` (dicts with ``role`` and ``content``).

        With the tokenizer's chat template (when it has one and ``use_template``), ending with the
        assistant turn's opening; otherwise the contents joined by blank lines, roles dropped,
        which is how a base model sees a few-shot prompt.
        """
        if use_template and self.has_chat_template:
            text = self.tokenizer.apply_chat_template(
                list(messages), tokenize=False, add_generation_prompt=True
            )
            return str(text)
        return "\n\n".join(m["content"] for m in messages)

    def greedy_until(
        self,
        requests: Sequence[tuple[str, list[str]]],
        max_new_tokens: int = 64,
        batch_size: int = 8,
    ) -> list[str]:
        """Greedy continuation of each context, cut before the first of its stop strings."""
        import torch

        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        budget = max(1, self.max_length - max_new_tokens)
        prompts: list[list[int]] = []
        for context, _ in requests:
            ids = self._ids(context)
            prompts.append((self._prefix(ids) + ids)[-budget:])
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id
        pad_id = int(pad if pad is not None else (eos if eos is not None else 0))
        plan = length_sorted_batches([len(p) for p in prompts], batch_size)
        self._backoff = backoff_for(self._backoff, batch_size)
        out = [""] * len(requests)

        def run(chunk: list[int]) -> list[str]:
            width = max(len(prompts[i]) for i in chunk)
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, i in enumerate(chunk):
                ids[row, width - len(prompts[i]) :] = torch.tensor(prompts[i])
                mask[row, width - len(prompts[i]) :] = 1
            device = self.model.device
            with torch.inference_mode():
                generated = self.model.generate(
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    num_beams=1,
                    pad_token_id=pad_id,
                    # The generation config of an instruct model may set sampling knobs; greedy
                    # decoding ignores them but warns, once per call.
                    temperature=None,
                    top_p=None,
                    top_k=None,
                )
            texts = []
            for row, i in enumerate(chunk):
                new = generated[row, width:].tolist()
                if eos is not None and eos in new:
                    new = new[: new.index(eos)]
                text = self.tokenizer.decode(new, skip_special_tokens=True)
                texts.append(_cut(text, requests[i][1]))
            return texts

        for batch in plan:
            texts = [t for part in self._backoff.run(run, batch) for t in part]
            for i, text in zip(batch, texts, strict=True):
                out[i] = text
        return out


def choose(logliks: Sequence[float], texts: Sequence[str]) -> tuple[int, int]:
    """(argmax loglikelihood, argmax loglikelihood per character of ``texts``); ties go to the
    lowest index.

    This is lm-evaluation-harness's ``acc_norm`` (0.4.x): the loglikelihood divided by the
    answer's length in characters, the answer without the delimiter that precedes it in the
    prompt (callers pass the bare answers). Its separate ``acc_bytes`` divides by UTF-8 bytes
    instead, which ranks ASCII answers the same way; we report characters only. An empty answer
    counts as one character.
    """
    normed = [ll / max(1, len(t)) for ll, t in zip(logliks, texts, strict=True)]
    acc = max(range(len(logliks)), key=lambda i: (logliks[i], -i))
    acc_norm = max(range(len(logliks)), key=lambda i: (normed[i], -i))
    return acc, acc_norm


@dataclass(frozen=True)
class _Group:
    """Requests sharing their first ``shared`` tokens (all context), scored on one prefix pass."""

    members: list[int]
    shared: int


def _shared_groups(
    requests: Sequence[tuple[str, str]],
    todo: Sequence[int],
    seqs: Sequence[list[int]],
    n_ctx: Sequence[int],
    truncated: Sequence[bool],
) -> tuple[list[_Group], list[int]]:
    """Requests with one context string grouped (two or more, not truncated), and the rest.

    The shared prefix is the members' common token prefix, cut so that every member keeps at
    least its last context token for the second pass (that position predicts its first
    continuation token).
    """
    by_context: dict[str, list[int]] = {}
    for i in todo:
        if not truncated[i]:
            by_context.setdefault(requests[i][0], []).append(i)
    groups: list[_Group] = []
    grouped: set[int] = set()
    for members in by_context.values():
        if len(members) < 2:
            continue
        first = seqs[members[0]]
        shared = min(n_ctx[i] for i in members) - 1
        for i in members[1:]:
            k = 0
            limit = min(shared, len(seqs[i]))
            while k < limit and seqs[i][k] == first[k]:
                k += 1
            shared = k
        if shared < 1:
            continue
        groups.append(_Group(members, shared))
        grouped.update(members)
    return groups, [i for i in todo if i not in grouped]


def _group_batches(
    groups: Sequence[_Group], seqs: Sequence[list[int]], batch_size: int
) -> list[list[int]]:
    """Groups longest first, packed so that a batch holds at most ``batch_size`` requests (a
    larger group goes alone). A pure function of its inputs, like every batch plan here."""
    longest = [max(len(seqs[i]) for i in g.members) for g in groups]
    order = sorted(range(len(groups)), key=lambda g: -longest[g])
    batches: list[list[int]] = []
    size = 0
    for g in order:
        n = len(groups[g].members)
        if batches and size + n <= batch_size:
            batches[-1].append(g)
            size += n
        else:
            batches.append([g])
            size = n
    return batches


def _cut(text: str, stops: Sequence[str]) -> str:
    """``text`` up to the earliest occurrence of any non-empty stop string."""
    positions = [p for p in (text.find(s) for s in stops if s) if p >= 0]
    return text[: min(positions)] if positions else text

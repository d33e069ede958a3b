"""Minimal, fully seeded fine-tuning of a sequence classifier (plain torch loop, no Trainer).

Enough to turn a base encoder into a task model the benchmark can evaluate: AdamW with linear
warmup and decay, dynamic padding, seeded shuffling, optional early stopping on dev accuracy and
optional LoRA adapters (merged before saving, so every output is a plain classifier folder). The
output folder appears atomically, so a killed run never leaves a folder that looks like a finished
model.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import DataError, ModelError, shown

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

Labelled = tuple[tuple[str, ...], int]
CARD_NAME = "bench_model_card.json"


@dataclass
class FinetuneConfig:
    epochs: int = 2
    lr: float = 1e-4
    batch_size: int = 32
    max_length: int = 128
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    seed: int = 0
    max_train_examples: int | None = None
    max_grad_norm: float = 1.0
    # Stop once dev accuracy has not improved for this many epochs and keep the best epoch's
    # weights. The learning-rate schedule still spans ``epochs``, so stopping never reshapes it.
    early_stopping_patience: int | None = None
    # LoRA rank; None trains every weight. Adapters are merged before saving.
    lora_r: int | None = None
    lora_alpha: int = 16
    lora_dropout: float = 0.1

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise a one-line ``ModelError`` for the first value fine-tuning cannot use."""
        problems = [
            (self.epochs < 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size < 1, f"batch_size must be >= 1, got {self.batch_size}"),
            # NaN and infinity pass "> 0" or poison every weight at the first step.
            (not (math.isfinite(self.lr) and self.lr > 0), f"lr must be > 0, got {self.lr}"),
            (self.max_length < 1, f"max_length must be >= 1, got {self.max_length}"),
            # numpy's global seed takes 0 <= seed < 2**32.
            (not 0 <= self.seed < 2**32, f"seed must be in [0, 2**32), got {self.seed}"),
            (
                self.max_train_examples is not None and self.max_train_examples < 1,
                f"max_train_examples must be >= 1, got {self.max_train_examples}",
            ),
            (
                self.early_stopping_patience is not None and self.early_stopping_patience < 1,
                f"early-stopping patience must be >= 1 epoch, got {self.early_stopping_patience}",
            ),
            (
                self.lora_r is not None and self.lora_r < 1,
                f"LoRA rank (lora_r) must be >= 1, got {self.lora_r}",
            ),
            (self.lora_alpha < 1, f"LoRA alpha must be >= 1, got {self.lora_alpha}"),
            (
                not 0 <= self.lora_dropout < 1,
                f"LoRA dropout must be in [0, 1), got {self.lora_dropout}",
            ),
        ]
        for bad, message in problems:
            if bad:
                raise ModelError(f"bad fine-tuning config: {message}")


@dataclass
class FinetuneResult:
    path: Path
    train_size: int
    steps: int
    train_time_s: float
    examples_per_s: float
    epoch_losses: list[float] = field(default_factory=list)
    # The saved model's dev accuracy: the best epoch's under early stopping, else the last one's.
    dev_accuracy: float | None = None
    card: dict[str, Any] = field(default_factory=dict)
    dev_curve: list[float] | None = None
    best_epoch: int | None = None
    stopped_early: bool = False
    epochs_run: int = 0
    lora: dict[str, Any] | None = None


@dataclass
class _Outcome:
    steps: int
    epoch_losses: list[float]
    train_time_s: float
    dev_curve: list[float]
    best_epoch: int | None
    stopped_early: bool


def _encode(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[tuple[str, ...]], max_length: int
) -> Any:
    first = [t[0] for t in texts]
    second = [t[1] for t in texts] if len(texts[0]) == 2 else None
    return tokenizer(
        first, second, truncation=True, max_length=max_length, padding="longest",
        return_tensors="pt",
    )  # fmt: skip


def _subsample(train: Sequence[Labelled], limit: int | None, seed: int) -> list[Labelled]:
    import torch

    if limit is None or limit >= len(train):
        return list(train)
    generator = torch.Generator().manual_seed(seed)
    keep = sorted(torch.randperm(len(train), generator=generator)[:limit].tolist())
    return [train[i] for i in keep]


def _validate(data: Sequence[Labelled], labels: list[str], what: str) -> None:
    if not data:
        raise DataError(f"no {what} examples to fine-tune on")
    arity = {len(inputs) for inputs, _ in data}
    if not arity <= {1, 2} or len(arity) > 1:
        raise DataError(f"{what} inputs must all be single texts or all pairs, got sizes {arity}")
    bad = [y for _, y in data if not 0 <= y < len(labels)]
    if bad:
        raise DataError(f"{what} label id {bad[0]} is outside 0..{len(labels) - 1}")


def _optimizer(model: PreTrainedModel, config: FinetuneConfig) -> torch.optim.Optimizer:
    import torch

    # Biases and norm weights are not decayed: decaying them only hurts (the usual BERT recipe).
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr)


def _linear_schedule(total: int, warmup: int) -> Any:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def _accuracy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    data: Sequence[Labelled],
    config: FinetuneConfig,
    device: str,
) -> float:
    import torch

    model.eval()
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(data), config.batch_size):
            batch = data[start : start + config.batch_size]
            encoded = _encode(tokenizer, [x for x, _ in batch], config.max_length).to(device)
            pred = model(**encoded).logits.argmax(dim=-1).cpu().tolist()
            correct += sum(int(p == y) for p, (_, y) in zip(pred, batch, strict=True))
    return correct / len(data)


# Shown by the live bar's columns, and appended to plain progress lines in logs.
_TRAIN_FIELDS = "{task.fields[rate]:>7.1f} ex/s  loss {task.fields[loss]:.4f}{task.fields[dev]}"


def _progress(enabled: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from bench.progress import make_progress

    return make_progress(
        enabled,
        columns=[
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(_TRAIN_FIELDS),
            TimeElapsedColumn(),
        ],
        plain_fields=_TRAIN_FIELDS,
    )


def _load_base(
    base: str, labels: list[str], device: str
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, list[str]]:
    """The model with a fresh head, its tokenizer, and the names of the parameters the base did
    not provide (newly initialised)."""
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bench.models.hf_loading import offline
    from bench.models.identity import local_model_dir

    folder = local_model_dir(base)
    source = str(folder) if folder is not None else base
    local_only = folder is not None or offline()
    if folder is None:
        from bench.hub import ensure_hub_model

        ensure_hub_model(base)  # offline and not cached: say so now, not after retries
    verbosity = transformers.logging.get_verbosity()
    # A base model's head is *meant* to be newly initialised; the library warns loudly about it.
    transformers.logging.set_verbosity_error()
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            source,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={name: i for i, name in enumerate(labels)},
            use_safetensors=True,
            ignore_mismatched_sizes=True,
            local_files_only=local_only,
            output_loading_info=True,
        )
        tokenizer = AutoTokenizer.from_pretrained(
            source, use_fast=True, local_files_only=local_only
        )
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:150]
        raise ModelError(
            f"cannot load base model {shown(base, 80)} for fine-tuning: {first}"
        ) from exc
    finally:
        transformers.logging.set_verbosity(verbosity)
    # Older transformers list mismatched keys as (name, checkpoint shape, model shape).
    mismatched = [k if isinstance(k, str) else k[0] for k in info.get("mismatched_keys", [])]
    fresh = sorted({*info.get("missing_keys", []), *mismatched})
    return model.to(device), tokenizer, fresh


# Attention projection names by architecture family, tried in order: (query, value) as in the LoRA
# paper. BERT, RoBERTa, ELECTRA, XLM-R (and so MiniLM); BART, T5-style and decoder LMs; DistilBERT;
# DeBERTa-v2; T5; GPT-2's fused projection.
_ATTENTION_NAMES: tuple[tuple[str, ...], ...] = (
    ("query", "value"),
    ("q_proj", "v_proj"),
    ("q_lin", "v_lin"),
    ("query_proj", "value_proj"),
    ("q", "v"),
    ("c_attn",),
)


def _lora_targets(model: torch.nn.Module) -> list[str]:
    """The attention projections to adapt: the first family whose names all name linear layers."""
    import torch
    from transformers.pytorch_utils import Conv1D

    linear = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear | Conv1D)
    }
    for names in _ATTENTION_NAMES:
        if set(names) <= linear:
            return list(names)
    kind = getattr(getattr(model, "config", None), "model_type", None) or type(model).__name__
    tried = ", ".join("/".join(names) for names in _ATTENTION_NAMES)
    raise ModelError(
        f"LoRA: no attention projections found in {kind!r} models (looked for linear layers "
        f"named {tried}); fine-tune without LoRA"
    )


def _head_modules(model: torch.nn.Module, fresh: Sequence[str]) -> list[str]:
    """Modules to train in full next to the adapters: the classifier, and whatever else the base
    did not provide (a frozen random layer, such as a missing pooler, would only add noise)."""
    owners = {name.rsplit(".", 1)[0] for name in fresh if "." in name}
    owners |= {name for name in ("classifier", "score") if hasattr(model, name)}
    # A module inside another one already trained in full would be wrapped twice.
    return sorted(
        name for name in owners if not any(name.startswith(f"{other}.") for other in owners)
    )


def _import_peft() -> Any:
    try:
        import peft
    except ImportError as exc:
        raise ModelError("LoRA needs the 'peft' package: pip install 'nlp-bench[lora]'") from exc
    return peft


def _add_lora(
    model: PreTrainedModel, config: FinetuneConfig, fresh: Sequence[str]
) -> tuple[Any, dict[str, Any]]:
    """Wrap ``model`` with LoRA adapters; returns the wrapped model and its card entry."""
    peft = _import_peft()
    targets = _lora_targets(model)
    head = _head_modules(model, fresh)
    lora_config = peft.LoraConfig(
        task_type=peft.TaskType.SEQ_CLS,
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        # A copy: peft extends the list it is given with its own head names.
        modules_to_save=list(head),
        bias="none",
    )
    try:
        wrapped = peft.get_peft_model(model, lora_config)
    except (ValueError, TypeError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"cannot add LoRA adapters to {type(model).__name__}: {first}") from exc
    card = {
        "r": config.lora_r,
        "alpha": config.lora_alpha,
        "dropout": config.lora_dropout,
        "target_modules": targets,
        "fully_trained_modules": head,
    }
    return wrapped, card


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise ModelError(
            f"output folder {out_dir} already exists; remove it or choose another --out"
        )


def _publish(tmp: Path, out_dir: Path) -> None:
    """Move a finished folder into place; the old one (if any) is removed only afterwards."""
    old: Path | None = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
        out_dir.rename(old)
    tmp.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()


def finetune(
    train: Sequence[Labelled],
    labels: list[str],
    base: str,
    out_dir: Path,
    config: FinetuneConfig | None = None,
    progress: bool = True,
    dev: Sequence[Labelled] | None = None,
    data_hash: str | None = None,
    device: str = "auto",
    overwrite: bool = False,
    train_tasks: Sequence[str] | None = None,
) -> FinetuneResult:
    """Fine-tune ``base`` on ``train`` ((inputs, label id) pairs) and save it to ``out_dir``.

    The saved config names the classes ``labels`` (so evaluation aligns them by name), and
    ``bench_model_card.json`` records base, config, train size, ``data_hash`` (and
    ``train_tasks``, both as given: provenance only), seed, timing, and with ``dev`` the dev
    accuracy after each epoch (``dev_curve``), the best epoch and the saved model's dev accuracy.
    With ``config.early_stopping_patience`` (which needs ``dev``) training stops once dev accuracy
    has not improved for that many epochs and the best epoch's weights are saved; without it the
    last epoch's are. With ``config.lora_r`` only LoRA adapters on the attention projections and
    the new head are trained; the adapters are merged, so the folder is a plain classifier. Same
    inputs and seed on the same device and library versions give identical weights.
    """
    import numpy as np
    import torch

    from bench import __version__
    from bench.models.hf_loading import resolve_device
    from bench.paths import check_output_dir

    config = config or FinetuneConfig()
    # The dataclass is mutable: a field changed after construction is checked here too.
    config.validate()
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise ModelError(f"fine-tuning needs at least two distinct labels, got {labels}")
    if config.early_stopping_patience is not None and not dev:
        raise ModelError("early stopping needs dev examples to measure progress on")
    if config.lora_r is not None:
        _import_peft()  # fail before any loading or training
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, overwrite)
    # A folder that cannot be written fails now, not after training. The parent is what must
    # be writable: the finished model is moved into place there (replacing out_dir if allowed).
    check_output_dir(out_dir.parent, "the output folder's parent")
    train_data = _subsample(train, config.max_train_examples, config.seed)
    _validate(train_data, labels, "train")
    dev_data = list(dev) if dev else []
    if dev_data:
        _validate(dev_data, labels, "dev")
    resolved = resolve_device(device)
    # Must be set before cuBLAS initialises for deterministic matmuls on CUDA; no effect on CPU.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

    cuda_devices = list(range(torch.cuda.device_count())) if resolved.startswith("cuda") else []
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    lora_card: dict[str, Any] | None = None
    # fork_rng: seeding here must not change the random state of whoever called us. The head's
    # and the adapters' initialisation both draw from the seeded generator.
    with torch.random.fork_rng(devices=cuda_devices):
        random.seed(config.seed)
        np.random.seed(config.seed)
        torch.manual_seed(config.seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            model, tokenizer, fresh = _load_base(base, labels, resolved)
            if config.lora_r is not None:
                wrapped, lora_card = _add_lora(model, config, fresh)
                outcome = _train(
                    wrapped, tokenizer, train_data, config, resolved, progress, dev_data
                )
                # Folds the adapters into the weights and unwraps the head: a plain model again.
                model = wrapped.merge_and_unload()
            else:
                outcome = _train(model, tokenizer, train_data, config, resolved, progress, dev_data)
        finally:
            torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)

    epochs_run = len(outcome.epoch_losses)
    dev_accuracy: float | None = None
    if outcome.dev_curve:
        # Early stopping saved the best epoch's weights; otherwise the last epoch's are saved.
        best = outcome.best_epoch if config.early_stopping_patience is not None else None
        dev_accuracy = outcome.dev_curve[(best or epochs_run) - 1]
    card: dict[str, Any] = {
        "base": base,
        "labels": list(labels),
        "config": asdict(config),
        "train_size": len(train_data),
        "data_hash": data_hash,
        "train_tasks": list(train_tasks) if train_tasks is not None else None,
        "seed": config.seed,
        "dev_accuracy": dev_accuracy,
        "dev_size": len(dev_data),
        "dev_curve": outcome.dev_curve if dev_data else None,
        "best_epoch": outcome.best_epoch,
        "stopped_early": outcome.stopped_early,
        "epochs_run": epochs_run,
        "lora": lora_card,
        "steps": outcome.steps,
        "epoch_losses": outcome.epoch_losses,
        "train_time_s": round(outcome.train_time_s, 3),
        "device": resolved,
        "versions": _versions(__version__, lora=lora_card is not None),
    }
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        _save_model(model, tokenizer, tmp)
        (tmp / CARD_NAME).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        _check_out_dir(out_dir, overwrite)
        _publish(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    train_time = outcome.train_time_s
    rate = len(train_data) * epochs_run / train_time if train_time > 0 else 0.0
    return FinetuneResult(
        path=out_dir,
        train_size=len(train_data),
        steps=outcome.steps,
        train_time_s=train_time,
        examples_per_s=rate,
        epoch_losses=outcome.epoch_losses,
        dev_accuracy=dev_accuracy,
        card=card,
        dev_curve=card["dev_curve"],
        best_epoch=outcome.best_epoch,
        stopped_early=outcome.stopped_early,
        epochs_run=epochs_run,
        lora=lora_card,
    )


def summary_line(folder: Path, seconds: float) -> str:
    """One line about a fine-tuned model folder, from its card: where it is, epochs run,
    training examples, dev accuracy (if there was a dev split) and time; ``seconds`` is the wall
    time the caller measured around everything (data, loading, training, saving)."""
    card = json.loads((Path(folder) / CARD_NAME).read_text(encoding="utf-8"))
    epochs, planned = card.get("epochs_run", 0), card.get("config", {}).get("epochs", 0)
    parts = [f"{epochs} epoch{'' if epochs == 1 else 's'}"]
    if card.get("stopped_early"):
        parts[0] += f" of {planned} (stopped early)"
    parts.append(f"{card.get('train_size', 0):,} training examples")
    dev = card.get("dev_accuracy")
    if dev is None:
        parts.append("no dev split")
    else:
        best = card.get("best_epoch")
        # Under early stopping the saved weights (and this score) are the best epoch's.
        early = card.get("config", {}).get("early_stopping_patience") is not None
        which = f", best epoch {best}" if early and best is not None and best != epochs else ""
        parts.append(f"dev accuracy {dev:.3f} ({card.get('dev_size', 0):,} examples{which})")
    parts.append(f"trained in {card.get('train_time_s', 0.0):.1f} s, {seconds:.1f} s in all")
    return f"saved {folder}: " + ", ".join(parts)


def _versions(bench_version: str, lora: bool) -> dict[str, str]:
    import torch
    import transformers

    versions = {
        "bench": bench_version,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    if lora:
        versions["peft"] = _import_peft().__version__
    return versions


def _save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: Path) -> None:
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copies of what training changes (trainable parameters, and buffers to be safe), on the
    CPU so that keeping the best epoch costs no accelerator memory."""
    state: dict[str, torch.Tensor] = {n: p for n, p in model.named_parameters() if p.requires_grad}
    state.update(model.named_buffers())
    return {n: t.detach().to("cpu", copy=True) for n, t in state.items()}


def _restore(model: torch.nn.Module, snapshot: dict[str, torch.Tensor]) -> None:
    import torch

    tensors: dict[str, torch.Tensor] = dict(model.named_parameters())
    tensors.update(model.named_buffers())
    with torch.no_grad():
        for name, saved in snapshot.items():
            tensors[name].copy_(saved)


def _train(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    data: list[Labelled],
    config: FinetuneConfig,
    device: str,
    progress: bool,
    dev: list[Labelled],
) -> _Outcome:
    """The loop itself. With ``dev``, dev accuracy is measured after every epoch (time not
    counted as training), which early stopping uses."""
    import torch

    n = len(data)
    per_epoch = math.ceil(n / config.batch_size)
    total = per_epoch * config.epochs
    warmup = math.ceil(config.warmup_ratio * total)
    optimizer = _optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _linear_schedule(total, warmup))
    # A private generator: the shuffle depends on the seed alone, not on how many random numbers
    # model initialisation or dropout happened to draw.
    generator = torch.Generator().manual_seed(config.seed)
    patience = config.early_stopping_patience
    epoch_losses: list[float] = []
    dev_curve: list[float] = []
    best_epoch: int | None = None
    best_state: dict[str, torch.Tensor] | None = None
    stopped_early = False
    steps = 0
    seen = 0
    eval_time = 0.0
    start = time.perf_counter()
    with _progress(progress) as bar:
        task = bar.add_task(
            "fine-tuning", total=n * config.epochs, rate=0.0, loss=float("nan"), dev=""
        )
        for epoch in range(1, config.epochs + 1):
            bar.update(task, description=f"epoch {epoch}/{config.epochs}")
            model.train()
            order = torch.randperm(n, generator=generator).tolist()
            loss_sum = 0.0
            for b in range(per_epoch):
                batch = [
                    data[i] for i in order[b * config.batch_size : (b + 1) * config.batch_size]
                ]
                encoded = _encode(tokenizer, [x for x, _ in batch], config.max_length).to(device)
                targets = torch.tensor([y for _, y in batch], device=device)
                loss = model(**encoded, labels=targets).loss
                loss.backward()
                if config.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                steps += 1
                value = float(loss.detach())
                loss_sum += value * len(batch)
                seen += len(batch)
                elapsed = time.perf_counter() - start - eval_time
                bar.update(task, advance=len(batch), loss=value, rate=seen / max(elapsed, 1e-9))
            epoch_losses.append(loss_sum / n)
            if not dev:
                continue
            eval_start = time.perf_counter()
            accuracy = _accuracy(model, tokenizer, dev, config, device)
            dev_curve.append(accuracy)
            bar.update(task, dev=f"  dev {accuracy:.3f}")
            # Strictly better only: on a tie the earlier (less trained) epoch stays the best.
            if best_epoch is None or accuracy > dev_curve[best_epoch - 1]:
                best_epoch = epoch
                # The last epoch's weights are the model's own; no copy needed to restore them.
                if patience is not None and epoch < config.epochs:
                    best_state = _snapshot(model)
            eval_time += time.perf_counter() - eval_start
            if patience is not None and epoch - best_epoch >= patience and epoch < config.epochs:
                stopped_early = True
                break
    if patience is not None and best_epoch is not None and best_epoch != len(epoch_losses):
        assert best_state is not None  # taken whenever a non-final epoch became the best
        _restore(model, best_state)
    model.eval()
    return _Outcome(
        steps=steps,
        epoch_losses=epoch_losses,
        train_time_s=time.perf_counter() - start - eval_time,
        dev_curve=dev_curve,
        best_epoch=best_epoch,
        stopped_early=stopped_early,
    )

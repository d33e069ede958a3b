"""Minimal, fully seeded fine-tuning of a sequence classifier (plain torch loop, no Trainer).

Enough to turn a base encoder into a task model the benchmark can evaluate: AdamW with linear
warmup and decay, dynamic padding, seeded shuffling. The output folder appears atomically, so a
killed run never leaves a folder that looks like a finished model.
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

from bench.errors import DataError, ModelError

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


@dataclass
class FinetuneResult:
    path: Path
    train_size: int
    steps: int
    train_time_s: float
    examples_per_s: float
    epoch_losses: list[float] = field(default_factory=list)
    dev_accuracy: float | None = None
    card: dict[str, Any] = field(default_factory=dict)


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


def _progress(enabled: bool) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>7.1f} ex/s  loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=False,
    )


def _load_base(
    base: str, labels: list[str], device: str
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bench.models.classifier import _offline
    from bench.models.identity import local_model_dir

    folder = local_model_dir(base)
    source = str(folder) if folder is not None else base
    local_only = folder is not None or _offline()
    verbosity = transformers.logging.get_verbosity()
    # A base model's head is *meant* to be newly initialised; the library warns loudly about it.
    transformers.logging.set_verbosity_error()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            source,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={name: i for i, name in enumerate(labels)},
            use_safetensors=True,
            ignore_mismatched_sizes=True,
            local_files_only=local_only,
        )
        tokenizer = AutoTokenizer.from_pretrained(
            source, use_fast=True, local_files_only=local_only
        )
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"cannot load base model {base!r} for fine-tuning: {first}") from exc
    finally:
        transformers.logging.set_verbosity(verbosity)
    return model.to(device), tokenizer


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise ModelError(f"output folder {out_dir} already exists; remove it or pass overwrite")


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
    ``train_tasks``, both as given: provenance only), seed, dev accuracy and timing. Same inputs and seed on the same device and library versions give identical
    weights.
    """
    import numpy as np
    import torch

    from bench import __version__
    from bench.models.classifier import resolve_device

    config = config or FinetuneConfig()
    if config.epochs < 1 or config.batch_size < 1:
        raise ModelError("fine-tuning needs epochs >= 1 and batch_size >= 1")
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise ModelError(f"fine-tuning needs at least two distinct labels, got {labels}")
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, overwrite)
    train_data = _subsample(train, config.max_train_examples, config.seed)
    _validate(train_data, labels, "train")
    if dev:
        _validate(dev, labels, "dev")
    resolved = resolve_device(device)
    # Must be set before cuBLAS initialises for deterministic matmuls on CUDA; no effect on CPU.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

    cuda_devices = list(range(torch.cuda.device_count())) if resolved.startswith("cuda") else []
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    # fork_rng: seeding here must not change the random state of whoever called us.
    with torch.random.fork_rng(devices=cuda_devices):
        random.seed(config.seed)
        np.random.seed(config.seed)
        torch.manual_seed(config.seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            model, tokenizer = _load_base(base, labels, resolved)
            result = _train(model, tokenizer, train_data, config, resolved, progress)
            dev_accuracy = _accuracy(model, tokenizer, dev, config, resolved) if dev else None
        finally:
            torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)

    steps, epoch_losses, train_time = result
    card: dict[str, Any] = {
        "base": base,
        "labels": list(labels),
        "config": asdict(config),
        "train_size": len(train_data),
        "data_hash": data_hash,
        "train_tasks": list(train_tasks) if train_tasks is not None else None,
        "seed": config.seed,
        "dev_accuracy": dev_accuracy,
        "dev_size": len(dev) if dev else 0,
        "steps": steps,
        "epoch_losses": epoch_losses,
        "train_time_s": round(train_time, 3),
        "device": resolved,
        "versions": {
            "bench": __version__,
            "torch": torch.__version__,
            "transformers": __import__("transformers").__version__,
        },
    }
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / CARD_NAME).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        _check_out_dir(out_dir, overwrite)
        _publish(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    rate = len(train_data) * config.epochs / train_time if train_time > 0 else 0.0
    return FinetuneResult(
        path=out_dir,
        train_size=len(train_data),
        steps=steps,
        train_time_s=train_time,
        examples_per_s=rate,
        epoch_losses=epoch_losses,
        dev_accuracy=dev_accuracy,
        card=card,
    )


def _train(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    data: list[Labelled],
    config: FinetuneConfig,
    device: str,
    progress: bool,
) -> tuple[int, list[float], float]:
    """The loop itself; returns (optimizer steps, mean loss per epoch, seconds)."""
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
    epoch_losses: list[float] = []
    seen = 0
    start = time.perf_counter()
    model.train()
    with _progress(progress) as bar:
        task = bar.add_task("fine-tuning", total=n * config.epochs, rate=0.0, loss=float("nan"))
        for epoch in range(config.epochs):
            bar.update(task, description=f"epoch {epoch + 1}/{config.epochs}")
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
                value = float(loss.detach())
                loss_sum += value * len(batch)
                seen += len(batch)
                elapsed = time.perf_counter() - start
                bar.update(task, advance=len(batch), loss=value, rate=seen / max(elapsed, 1e-9))
            epoch_losses.append(loss_sum / n)
    model.eval()
    return total, epoch_losses, time.perf_counter() - start

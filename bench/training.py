"""Fine-tuning on tasks: training pairs from task splits in one label space (by label name,
never by position), dev splits for early stopping, the base encoder asset, and the models cache.
``bench.finetune`` is the trainer underneath (pairs in, a model folder out)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import BenchError, listing
from bench.specs import canonical_json, sha256_text

if TYPE_CHECKING:
    from bench.finetune import FinetuneConfig
    from bench.tasks.examples import TaskData

# The pinned encoder asset ``--base minilm`` names.
BASE_ASSET = "minilm"


def base_model_path(base: str) -> str:
    """``minilm`` names the pinned encoder asset; anything else is a hub id or folder."""
    if base != BASE_ASSET:
        return base
    from bench.assets import asset_dir

    # The asset's extract rule strips the wheel's prefix: its folder is the HF model folder.
    return str(asset_dir(BASE_ASSET))


def sample_items(items: list[Any], cap: int | None, seed: int) -> list[Any]:
    if cap is None or len(items) <= cap:
        return items
    import random

    rng = random.Random(seed)
    return rng.sample(items, cap)


def training_pairs(
    datas: Sequence[TaskData],
    labels: Sequence[str],
    cap: int | None,
    seed: int,
    role: str = "train",
) -> list[tuple[tuple[str, ...], int]]:
    """Examples of several tasks in one label space (by label name, never by position)."""
    index = {name: i for i, name in enumerate(labels)}
    pairs: list[tuple[tuple[str, ...], int]] = []
    for data in datas:
        data.spec.require_labels("fine-tuning a classifier")
        unknown = set(data.spec.labels) - set(index)
        if unknown:
            raise BenchError(
                f"task {data.spec.name!r} has labels {listing(sorted(unknown), 5, 20)} outside "
                f"the model's label set ({listing(labels, 5, 20)})"
            )
        examples = data.splits.get(role, [])  # type: ignore[call-overload]
        chosen = sample_items(list(examples), cap, seed)
        pairs += [(ex.inputs, index[data.spec.labels[ex.label]]) for ex in chosen]
    return pairs


def _require_dev_splits(datas: Sequence[TaskData]) -> None:
    # Early stopping on a dev set drawn from only some of the tasks would silently favour those.
    missing = [d.spec.name for d in datas if not d.splits.get("dev")]
    if len(missing) == 1:
        raise BenchError(f"early stopping needs a dev split, and task {missing[0]!r} has none")
    if missing:
        raise BenchError(f"early stopping needs a dev split, and tasks {missing} have none")


def train_on(
    datas: Sequence[TaskData],
    labels: Sequence[str],
    base: str,
    out: Path,
    config: FinetuneConfig,
    max_train: int | None,
    progress: bool = True,
) -> Path:
    """Fine-tune on the train split of ``datas``; their dev splits (up to 1,000 examples each)
    give the dev accuracy per epoch, which early stopping, when configured, stops on."""
    from bench.finetune import finetune

    if config.early_stopping_patience is not None:
        _require_dev_splits(datas)
    train = training_pairs(datas, labels, max_train, config.seed)
    if not train:
        raise BenchError(f"tasks {[d.spec.name for d in datas]} have no training examples")
    dev = training_pairs(datas, labels, 1000, config.seed, role="dev")
    result = finetune(
        train,
        list(labels),
        base_model_path(base),
        out,
        config,
        progress=progress,
        dev=dev or None,
        data_hash=sha256_text(canonical_json([d.data_hash for d in datas])),
        train_tasks=[d.spec.name for d in datas],
    )
    return Path(result.path)


def finetune_on_tasks(
    tasks: Sequence[str],
    base: str,
    out: Path,
    config: FinetuneConfig,
    max_train: int | None,
    labels: Sequence[str] | None = None,
    tasks_dir: Sequence[Path] = (),
    progress: bool = True,
) -> Path:
    """``bench finetune``: tasks by name; the label set is the first task's unless given."""
    from bench.tasks import get_task, load_task_data

    datas = [load_task_data(r.spec, r.base_dir) for r in (get_task(t, tasks_dir) for t in tasks)]
    chosen = list(labels) if labels is not None else list(datas[0].spec.labels)
    return train_on(datas, chosen, base, out, config, max_train, progress)


def models_root() -> Path:
    """Where the harness trains models into (default models, transfer models): ``$BENCH_MODELS_DIR``, else the cache's models/."""
    import os

    from bench.assets import cache_root

    env = os.environ.get("BENCH_MODELS_DIR")
    return Path(env) if env else cache_root() / "models"

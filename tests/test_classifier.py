"""HFClassifier on a tiny random BERT: batching must not change a single logit; errors are clear."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.errors import ModelError
from bench.models.batching import length_sorted_batches
from bench.models.classifier import HFClassifier
from bench.models.identity import folder_hash, model_identity

pytestmark = pytest.mark.usefixtures("torch_one_thread")

SINGLES = [
    ("the movie was good",),
    ("bad",),
    ("the food was really very good and the service was excellent",),
    ("a dog runs in the park",),
    ("it is not lovely",),
    ("terrible",),
    ("two people eat in the house but the cat sleeps on the book",),
    ("the hotel room",),
    ("the movie was good",),  # a duplicate: equal lengths must keep input order
    ("awful awful awful service and poor food",),
]
PAIRS = [
    ("a man sleeps in the house", "the man sleeps"),
    ("two dogs run", "no dog runs in the park and the cat eats"),
    ("the woman eats", "the woman eats"),
    ("people", "some people are happy and some people are sad"),
]


@pytest.fixture(scope="module")
def clf(tiny_model_dir: Path) -> HFClassifier:
    return HFClassifier.load(str(tiny_model_dir), device="cpu")


def _direct(clf: HFClassifier, inputs: tuple[str, ...]) -> np.ndarray:
    """Logits from the model on one example, no padding, no batching: the reference."""
    encoded = clf.tokenizer(*inputs, return_tensors="pt")
    with torch.inference_mode():
        out: np.ndarray = clf.model(**encoded).logits[0].numpy()
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_load_reports_labels_device_dtype(clf: HFClassifier) -> None:
    assert clf.labels == ["entailment", "neutral", "contradiction"]
    assert clf.num_labels == 3
    assert clf.device == "cpu"
    assert clf.dtype == "float32"
    # 256 requested, but the tokenizer (and position embeddings) stop at 128.
    assert clf.max_length == 128
    assert not clf.model.training


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_classify_matches_unbatched_model_in_original_order(
    clf: HFClassifier, batch_size: int
) -> None:
    logits = clf.classify(SINGLES, batch_size=batch_size)
    assert logits.shape == (len(SINGLES), 3)
    assert logits.dtype == np.float32
    reference = np.stack([_direct(clf, x) for x in SINGLES])
    np.testing.assert_allclose(logits, reference, atol=1e-5, rtol=0)
    # The tiny model is random but not flat: different inputs give clearly different logits,
    # so a reordering bug could not hide inside the tolerance.
    assert np.abs(reference[0] - reference[1]).max() > 0.05


def test_padding_aware_classify_matches_the_unbatched_model(clf: HFClassifier) -> None:
    pairs = [(a[0], b[0]) for a, b in zip(SINGLES, SINGLES[1:] + SINGLES[:1], strict=True)]
    for inputs in (SINGLES, pairs):
        reference = np.stack([_direct(clf, x) for x in inputs])
        for max_batch in (1, 2, 64):
            got = clf.classify_padding_aware(inputs, max_batch=max_batch, overhead_tokens=8)
            assert got.dtype == np.float32
            np.testing.assert_allclose(got, reference, atol=1e-5, rtol=0)
    assert clf.classify_padding_aware([]).shape == (0, 3)


def test_pairs_are_encoded_as_pairs(clf: HFClassifier) -> None:
    logits = clf.classify(PAIRS, batch_size=2)
    reference = np.stack([_direct(clf, p) for p in PAIRS])
    np.testing.assert_allclose(logits, reference, atol=1e-5, rtol=0)
    joined = clf.classify([(" ".join(p),) for p in PAIRS], batch_size=2)
    assert np.abs(joined - logits).max() > 1e-3  # token types and [SEP] matter


def test_batch_plan_is_longest_first_and_deterministic(clf: HFClassifier) -> None:
    lengths = clf.token_lengths(SINGLES)
    assert lengths[1] == 3  # [CLS] bad [SEP]
    plan = clf.batch_plan(SINGLES, 4)
    assert plan == length_sorted_batches(lengths, 4)
    assert plan == clf.batch_plan(list(SINGLES), 4)
    yielded = [indices for indices, _ in clf.predict_batches(SINGLES, 4)]
    assert yielded == plan
    flat = [i for b in plan for i in b]
    assert sorted(flat) == list(range(len(SINGLES)))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    assert flat.index(0) < flat.index(8)  # equal inputs keep their order


def test_skip_drops_complete_batches_and_recomputes_partial_ones(clf: HFClassifier) -> None:
    full = dict((tuple(idx), logits) for idx, logits in clf.predict_batches(SINGLES, 3))
    plan = clf.batch_plan(SINGLES, 3)
    done = set(plan[0]) | {plan[1][0]}  # first batch complete, second partly stored
    resumed = list(clf.predict_batches(SINGLES, 3, skip=done))
    assert [idx for idx, _ in resumed] == plan[1:]
    for idx, logits in resumed:
        np.testing.assert_array_equal(logits, full[tuple(idx)])
    everything = set(range(len(SINGLES)))
    assert list(clf.predict_batches(SINGLES, 3, skip=everything)) == []


def test_empty_and_mixed_inputs(clf: HFClassifier) -> None:
    assert clf.classify([], batch_size=4).shape == (0, 3)
    with pytest.raises(ValueError, match="all be single texts or all pairs"):
        clf.classify([("a",), ("a", "b")], batch_size=4)


def test_truncation_applies_max_length(tiny_model_dir: Path) -> None:
    short = HFClassifier.load(str(tiny_model_dir), device="cpu", max_length=8)
    text = ("the movie was good and the food was good and the service was good",)
    assert short.token_lengths([text]) == [8]
    np.testing.assert_allclose(
        short.classify([text]), short.classify([("the movie was good and the food",)]), atol=1e-5
    )


# ------------------------------------------------------------------------------------- load errors


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"model folder .* does not exist"):
        HFClassifier.load(str(tmp_path / "nope"))
    with pytest.raises(ModelError, match="does not exist"):
        HFClassifier.load("./no/such/model")


def test_folder_without_config(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_model_dir, tmp_path / "m")
    (folder / "config.json").unlink()
    with pytest.raises(ModelError, match=r"has no config\.json"):
        HFClassifier.load(str(folder))


def test_folder_without_tokenizer(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_model_dir, tmp_path / "m")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (folder / name).unlink()
    with pytest.raises(ModelError) as err:
        HFClassifier.load(str(folder))
    assert str(err.value) == f"model folder {folder} has no tokenizer files"


def test_pickle_only_weights_are_refused_unless_allowed(
    clf: HFClassifier, tiny_model_dir: Path, tmp_path: Path
) -> None:
    folder = _copy(tiny_model_dir, tmp_path / "m")
    (folder / "model.safetensors").unlink()
    clf.model.save_pretrained(folder, safe_serialization=False)
    assert (folder / "pytorch_model.bin").is_file()
    with pytest.raises(ModelError, match=r"only pickle weights \(pytorch_model.bin\)"):
        HFClassifier.load(str(folder))
    trusted = HFClassifier.load(str(folder), use_safetensors=False, device="cpu")
    np.testing.assert_allclose(trusted.classify(SINGLES[:3]), clf.classify(SINGLES[:3]), atol=1e-5)


def test_base_model_without_head_is_refused(tiny_base_dir: Path) -> None:
    with pytest.raises(ModelError, match=r"missing trained weights \(classifier.bias"):
        HFClassifier.load(str(tiny_base_dir))


def test_unreadable_weights(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_model_dir, tmp_path / "m")
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="cannot read weights"):
        HFClassifier.load(str(folder))


def test_not_a_sequence_classifier(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import ViTConfig

    folder = _copy(tiny_model_dir, tmp_path / "m")
    ViTConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1).save_pretrained(folder)
    with pytest.raises(ModelError, match="not a sequence-classification model"):
        HFClassifier.load(str(folder))


def test_uncached_hub_id_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # so "org/model" cannot be a local folder by accident
    with pytest.raises(ModelError) as err:
        HFClassifier.load("bench-test-org/no-such-model-xyz")
    assert (
        "cannot load model 'bench-test-org/no-such-model-xyz': it is not a local folder and not "
        "in the hub cache, and HF_HUB_OFFLINE is set" in str(err.value)
    )
    assert "\n" not in str(err.value)


def test_bad_device_and_dtype(tiny_model_dir: Path) -> None:
    with pytest.raises(ModelError, match="unknown dtype"):
        HFClassifier.load(str(tiny_model_dir), dtype="float8")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="CUDA is not available"):
            HFClassifier.load(str(tiny_model_dir), device="cuda")


# ---------------------------------------------------------------------------------------- identity


def test_local_identity_tracks_weights_not_extras(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_model_dir, tmp_path / "m")
    ident = model_identity(str(folder))
    assert ident.kind == "local"
    assert ident.path == str(folder)
    assert ident.hash == model_identity(str(folder)).hash
    # A copy elsewhere is the same model, and keys the same (the path is not keyed).
    assert ident.hash == model_identity(str(tiny_model_dir)).hash
    assert ident.key() == model_identity(str(tiny_model_dir)).key()

    (folder / "README.md").write_text("notes\n")
    st = (folder / "model.safetensors").stat()
    os.utime(folder / "model.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert folder_hash(folder) == ident.hash  # new mtime, same bytes: same model

    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    tensors["classifier.bias"] = tensors["classifier.bias"] + 1.0
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    changed = model_identity(str(folder)).hash
    assert changed != ident.hash

    vocab = folder / "vocab.txt"
    vocab.write_text(vocab.read_text() + "extra\n")
    assert model_identity(str(folder)).hash != changed


def test_local_identity_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        model_identity(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"has no config\.json"):
        model_identity(str(tmp_path / "empty"))


def test_hub_identity_from_cache_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--acme--tiny-nli"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)

    ident = model_identity("acme/tiny-nli", cache_dir=cache)
    assert (ident.kind, ident.path, ident.hash, ident.revision) == (
        "hub",
        "acme/tiny-nli",
        commit,
        None,
    )
    assert model_identity("acme/tiny-nli", revision=commit, cache_dir=cache).hash == commit
    # Not cached: a full commit hash pins itself; anything else cannot be pinned offline and is
    # refused in one line (never keyed as "unresolved").
    other = "fedcba9876543210fedcba9876543210fedcba98"
    assert model_identity("acme/other", revision=other, cache_dir=cache).hash == other
    for revision in ("v1.0", None):
        with pytest.raises(ModelError, match="not in the hub cache, and the hub is offline") as e:
            model_identity("acme/other", revision=revision, cache_dir=cache)
        assert "\n" not in str(e.value)

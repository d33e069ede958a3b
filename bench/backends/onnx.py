"""The ONNX Runtime backend: sequence classifiers exported from PyTorch, fp32 or int8.

``export_onnx`` writes a self-contained folder (``model.onnx``, the tokenizer, ``config.json``
with the label names, ``export.json`` saying where it came from) that ``--backend onnx`` (or an
``onnx:`` prefix) evaluates and attacks like any other classifier. Its identity is a content
hash of those files, so an int8 export and its fp32 source are different models, and a
regression gate can compare them example by example.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from bench.backends import (
    Classifier,
    LanguageModel,
    LoadSettings,
    ModelIdentity,
    ModelType,
    register_backend,
)
from bench.errors import ModelError
from bench.models.identity import TOKENIZER_FILES, file_sha256
from bench.models.tokenized import INPUT_NAMES, TokenizedClassifier

if TYPE_CHECKING:
    from bench.specs import ModelSpec

MODEL_FILE = "model.onnx"
EXPORT_CARD = "export.json"
OPSET = 17
Quantize = Literal["int8"] | None


def _folder(path: str) -> Path:
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ModelError(
            f"ONNX model folder {path} does not exist (make one with `bench export onnx`)"
        )
    if not (folder / MODEL_FILE).is_file():
        raise ModelError(f"ONNX model folder {path} has no {MODEL_FILE}")
    if not (folder / "config.json").is_file():
        raise ModelError(f"ONNX model folder {path} has no config.json (its label names)")
    return folder


# Operators that quantise an activation with a scale taken from the tensor at run time.
_DYNAMIC_QUANTISERS = frozenset({"DynamicQuantizeLinear", "DynamicQuantizeMatMul"})


def _quantises_at_run_time(graph_file: Path) -> bool:
    """Whether the graph quantises activations dynamically (what ``--quantize int8`` writes)."""
    import onnx

    try:
        graph = onnx.load(str(graph_file), load_external_data=False).graph
    except Exception:  # unreadable here: ONNX Runtime's own load says why, in one line
        return False
    return any(node.op_type in _DYNAMIC_QUANTISERS for node in graph.node)


def _identity_files(folder: Path) -> list[Path]:
    names = {MODEL_FILE, "config.json", *TOKENIZER_FILES}
    return sorted((p for p in folder.iterdir() if p.is_file() and p.name in names), key=str)


class ONNXClassifier(TokenizedClassifier):
    """An exported classifier on an ONNX Runtime session (CPU, or CUDA when asked and there)."""

    def __init__(self, folder: Path, device: str = "auto", max_length: int = 256) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        from bench.models.hf_loading import limited_length, quiet_transformers

        self.path = str(folder)
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        id2label = config.get("id2label") or {}
        self._labels = [str(id2label[k]) for k in sorted(id2label, key=int)]
        if len(self._labels) < 2:
            raise ModelError(f"ONNX model folder {folder} names fewer than 2 labels")
        available = ort.get_available_providers()
        wants_cuda = device.startswith("cuda") or (
            device == "auto" and "CUDAExecutionProvider" in available
        )
        if device.startswith("cuda") and "CUDAExecutionProvider" not in available:
            raise ModelError(f"device {device!r} requested but ONNX Runtime has no CUDA provider")
        providers = ["CUDAExecutionProvider"] if wants_cuda else []
        providers.append("CPUExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(folder / MODEL_FILE), providers=providers)
        except Exception as exc:  # ONNX Runtime's own error types: one line each
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"cannot load ONNX model {folder / MODEL_FILE}: {first}") from None
        self._inputs = {i.name for i in self.session.get_inputs()}
        with quiet_transformers():
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ModelError(
                    f"cannot load the tokenizer of ONNX model {folder}: {exc}"
                ) from None
        self.max_length = limited_length(max_length, self.tokenizer)
        self._device = "cuda" if self.session.get_providers()[0].startswith("CUDA") else "cpu"
        self._backoff = None
        # Dynamic int8 quantisation scales each MatMul's input by the min and max of the whole
        # tensor: every example of the batch, and its padding. Batched, an example's logits
        # moved with its neighbours (probabilities by up to 0.1, and predictions flipped), so a
        # row depended on the batch size, on Ray's shards, on an attack's query batches and on
        # a validator's rescore sample, all under one run key. Such a graph sees one example at
        # a time, unpadded, and a row depends on its text alone.
        self.one_at_a_time = _quantises_at_run_time(folder / MODEL_FILE)

    @property
    def labels(self) -> list[str]:
        return list(self._labels)

    @property
    def device(self) -> str:
        return self._device

    def _forward(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        feed = {k: v for k, v in arrays.items() if k in self._inputs}
        if self.one_at_a_time:
            return np.concatenate([self._run(one) for one in _unpadded_rows(feed)], axis=0)
        return self._run(feed)

    def _run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        (logits,) = self.session.run(["logits"], feed)
        return np.asarray(logits, dtype=np.float32)


def _unpadded_rows(feed: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Each example of a padded batch as a batch of one without its padding (the positions its
    attention mask leaves out, on either side)."""
    mask = feed.get("attention_mask")
    rows = []
    for i in range(len(next(iter(feed.values())))):
        keep = np.flatnonzero(mask[i]) if mask is not None else None
        if keep is None or len(keep) == 0:
            rows.append({k: v[i : i + 1] for k, v in feed.items()})
            continue
        start, stop = int(keep[0]), int(keep[-1]) + 1
        rows.append({k: v[i : i + 1, start:stop] for k, v in feed.items()})
    return rows


@register_backend("onnx")
class ONNXBackend:
    """Local folders written by :func:`export_onnx`; classifiers only."""

    name = "onnx"

    def identity(self, spec: ModelSpec) -> ModelIdentity:
        folder = _folder(spec.path)
        digest = hashlib.sha256()
        for file in _identity_files(folder):
            digest.update(f"{file.name}\0{file_sha256(file)}\n".encode())
        return ModelIdentity(self.name, "local", spec.path, digest.hexdigest(), None)

    def model_type(self, spec: ModelSpec) -> ModelType:
        return "classifier"

    def require(self, spec: ModelSpec, model_type: ModelType) -> None:
        if model_type != "classifier":
            raise ModelError(
                f"the onnx backend runs classifiers only; {spec.path} cannot be prompted"
            )

    def key_settings(self, settings: LoadSettings) -> dict[str, Any]:
        self._check_dtype(settings)
        # The precision is fixed at export (and part of the folder's hash). "rows": dynamically
        # quantised graphs run one example at a time (ONNXClassifier); runs stored before that
        # depended on their batches, and are not answered from the store under this key.
        return {"dtype": "export", "runtime": "onnxruntime", "rows": "quantised-unbatched"}

    @staticmethod
    def _check_dtype(settings: LoadSettings) -> None:
        if settings.dtype not in ("auto", "float32"):
            raise ModelError(
                f"--dtype {settings.dtype} does not apply to an ONNX model: its precision is "
                "fixed when it is exported (bench export onnx --quantize int8)"
            )

    def load_classifier(self, spec: ModelSpec, settings: LoadSettings) -> Classifier:
        self._check_dtype(settings)
        return ONNXClassifier(_folder(spec.path), settings.device, settings.max_length or 256)

    def load_language_model(self, spec: ModelSpec, settings: LoadSettings) -> LanguageModel:
        self.require(spec, "language_model")
        raise AssertionError("unreachable")


def export_onnx(
    model: ModelSpec, out: Path, quantize: Quantize = None, progress: bool = True
) -> Path:
    """Export a Hugging Face sequence classifier to ``out`` (written atomically: a folder that
    exists is complete). ``quantize="int8"`` applies ONNX Runtime's dynamic int8 quantisation
    to the weights of matrix multiplications."""
    import torch

    from bench.backends import get_backend
    from bench.models.classifier import HFClassifier
    from bench.progress import console

    if model.backend != "hf":
        raise ModelError(f"bench export onnx takes a transformers model, not a {model.backend} one")
    _check_replaceable(Path(out))
    started = time.perf_counter()
    source = get_backend("hf").identity(model)
    classifier = HFClassifier.from_spec(model, device="cpu", dtype="float32")
    torch_model = classifier.model
    sample = classifier._encode([("a short text", "and a pair")], return_tensors="pt")
    names = [k for k in INPUT_NAMES if k in sample]

    class Logits(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.inner(**dict(zip(names, inputs, strict=True))).logits

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        fp32 = work / ("fp32.onnx" if quantize else MODEL_FILE)
        wrapper = Logits(torch_model).eval()  # tracing a module in train mode keeps dropout
        axes = {k: {0: "batch", 1: "sequence"} for k in names}
        # The TorchScript exporter (dynamic axes, no onnxscript needed) warns that it is legacy
        # and that traced constants are constants; neither applies to a fixed classifier graph.
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                tuple(sample[k] for k in names),
                str(fp32),
                input_names=names,
                output_names=["logits"],
                dynamic_axes={**axes, "logits": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
        if quantize == "int8":
            import logging

            from onnxruntime.quantization import QuantType, quantize_dynamic

            # It logs a suggestion to pre-process the graph (shape inference for static
            # quantisation) on the root logger; dynamic weight quantisation does not need it.
            root = logging.getLogger()
            level = root.level
            root.setLevel(logging.ERROR)
            try:
                quantize_dynamic(str(fp32), str(work / MODEL_FILE), weight_type=QuantType.QInt8)
            finally:
                root.setLevel(level)
            fp32.unlink()
        classifier.tokenizer.save_pretrained(work)
        torch_model.config.save_pretrained(work)
        (work / EXPORT_CARD).write_text(
            json.dumps(
                {
                    "source": {"path": model.path, "hash": source.hash, "kind": source.kind},
                    "labels": classifier.labels,
                    "quantize": quantize or "none",
                    "opset": OPSET,
                    "inputs": names,
                    "torch": torch.__version__,
                    "onnxruntime": _version("onnxruntime"),
                },
                indent=2,
            )
            + "\n"
        )
        # mkdtemp made it private; the published folder gets the usual permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(work, 0o777 & ~umask)
        if out.exists():
            shutil.rmtree(out)
        os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if progress:
        console.print(
            f"exported {model.name} to {out} ({quantize or 'fp32'}, "
            f"{time.perf_counter() - started:.1f} s)"
        )
    return out


def _check_replaceable(out: Path) -> None:
    """``out`` may be replaced by an export: it does not exist, or is an empty folder or an
    earlier export. Any other folder was deleted whole (``--out .`` took the working folder
    with it)."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ModelError(f"--out {out} is a file; name a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / EXPORT_CARD).is_file():
        raise ModelError(
            f"--out {out} is a folder that holds other files, not an earlier export (it has no "
            f"{EXPORT_CARD}); name a new or empty folder, or an export to replace"
        )


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"

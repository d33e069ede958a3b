"""GGUF files to plain safetensors folders, and the default causal LM built from the smollm2 asset.

Transformers reads a GGUF file by dequantising every tensor to float32 on load. Doing that once
and saving the result as an ordinary folder means later runs load it like any other model (no
``gguf`` import, no dequantisation cost, a folder hash for the run identity) and the
:class:`~bench.models.causal.CausalLM` adapter needs no GGUF special case.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.errors import ModelError

log = logging.getLogger(__name__)

DEFAULT_ASSET = "smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Enough of the archive hash to tell pins apart, short enough for a readable folder name.
_HASH_CHARS = 12
# Bumped when the conversion writes something else, so cached folders are converted afresh.
_CONVERSION = "c2"


def convert_gguf(gguf_path: Path, out_dir: Path) -> Path:
    """Dequantise ``gguf_path`` to float32 and save it, with its tokenizer, as ``out_dir``.

    Atomic: the folder is written under a temporary name beside ``out_dir`` and renamed into
    place, so a crash never leaves a half-written folder that looks like a model. An existing
    ``out_dir`` is replaced.
    """
    gguf_path = Path(gguf_path)
    out_dir = Path(out_dir)
    if not gguf_path.is_file():
        raise ModelError(f"GGUF file {gguf_path} does not exist")

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import is_gguf_available

    if not is_gguf_available():
        raise ModelError("reading GGUF files needs the 'gguf' package (>=0.10); pip install gguf")
    started = time.perf_counter()
    source, name = str(gguf_path.parent), gguf_path.name
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source, gguf_file=name, dtype=torch.float32, local_files_only=True
        )
        tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=name, local_files_only=True)
        _fix_special_tokens(tokenizer, gguf_path)
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as exc:
        lines = str(exc).strip().splitlines()
        raise ModelError(
            f"cannot read GGUF file {gguf_path}: {lines[0] if lines else exc}"
        ) from exc
    finally:
        transformers.logging.set_verbosity(verbosity)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        # The tokenizer "saves its vocabulary" by copying the whole GGUF file (weights included)
        # as tokenizer.model; tokenizer.json already holds everything it needs.
        spare = tmp / "tokenizer.model"
        if spare.is_file() and spare.read_bytes()[:4] == b"GGUF":
            spare.unlink()
        _portable_tokenizer_class(tmp / "tokenizer_config.json")
        # mkdtemp makes the folder private; a model folder is as readable as any other cache file.
        tmp.chmod(0o755)
        for file in tmp.iterdir():
            file.chmod(0o644)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("converted %s to %s in %.1f s", gguf_path.name, out_dir, time.perf_counter() - started)
    return out_dir


def dequantise_gguf(gguf_path: Path, out_path: Path) -> Path:
    """Write ``gguf_path`` again as ``out_path`` with every tensor in float32.

    The weights are exactly those transformers computes on load (:func:`convert_gguf`), in the
    layout llama.cpp reads, and the metadata (tokenizer, chat template) is copied unchanged. A
    server given this file computes with the same weights as the in-process model, so comparing
    the two measures the serving alone; served quantised, the quantised kernels (which also round
    activations to 8 bits) move near-tied logits as well. Atomic like :func:`convert_gguf`.
    """
    gguf_path = Path(gguf_path)
    out_path = Path(out_path)
    if not gguf_path.is_file():
        raise ModelError(f"GGUF file {gguf_path} does not exist")
    import numpy as np
    from gguf import GGUFReader, GGUFValueType, GGUFWriter, LlamaFileType
    from gguf.quants import dequantize

    try:
        reader = GGUFReader(str(gguf_path))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read GGUF file {gguf_path}: {exc}") from exc
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    try:
        writer = GGUFWriter(str(tmp), str(reader.fields["general.architecture"].contents()))
        for key, field in reader.fields.items():
            # The writer sets the header fields and the architecture itself.
            if key.startswith("GGUF.") or key == "general.architecture":
                continue
            value = field.contents()
            if key == "general.file_type":
                value = int(LlamaFileType.ALL_F32)
            subtype = field.types[1] if field.types[0] == GGUFValueType.ARRAY else None
            writer.add_key_value(key, value, field.types[0], sub_type=subtype)
        for tensor in reader.tensors:
            weights = dequantize(tensor.data, tensor.tensor_type)
            writer.add_tensor(tensor.name, np.ascontiguousarray(weights, dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        tmp.chmod(0o644)
        tmp.replace(out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out_path


def _portable_tokenizer_class(config_path: Path) -> None:
    """Name the generic tokenizer class in ``tokenizer_config.json``.

    The GGUF conversion calls a byte-level BPE tokenizer (SmolLM2's) ``LlamaTokenizer``. With
    transformers 4 that class still follows ``tokenizer.json``, but transformers 5 (which vLLM
    runs) rebuilds a SentencePiece-style Llama tokenizer from the class name and splits " Paris"
    into other tokens. The generic fast class reads ``tokenizer.json`` as it is under both.
    """
    import json

    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config.pop("legacy", None)  # a SentencePiece Llama option
    if config.get("add_prefix_space") is None:
        config.pop("add_prefix_space", None)
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def _gguf_scalar(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None or not field.data:
        return None
    return field.parts[field.data[0]].tolist()[0]


def _fix_special_tokens(tokenizer: Any, gguf_path: Path) -> None:
    """Set special tokens and BOS insertion from the GGUF metadata.

    transformers 4.57's GGUF tokenizer conversion mislabels them for SmolLM2 (EOS became
    ``<|im_start|>``, BOS is added although the file says not to, no pad token), which breaks
    generation stopping and shifts every loglikelihood by an extra leading token.
    """
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_path))
    for role in ("bos", "eos", "unknown", "padding"):
        token_id = _gguf_scalar(reader, f"tokenizer.ggml.{role}_token_id")
        if token_id is None:
            continue
        token = tokenizer.convert_ids_to_tokens(int(token_id))
        name = {"unknown": "unk", "padding": "pad"}.get(role, role)
        setattr(tokenizer, f"{name}_token", token)
    add_bos = _gguf_scalar(reader, "tokenizer.ggml.add_bos_token")
    if add_bos is not None and hasattr(tokenizer, "add_bos_token"):
        # The fast Llama tokenizer rebuilds its post-processor when this attribute is set.
        tokenizer.add_bos_token = bool(add_bos)


def default_causal_lm() -> Path:
    """The smollm2 asset as a float32 safetensors folder, converted on first use and cached.

    The folder name carries the asset's archive hash and the conversion's version, so a new pin
    or a changed conversion converts afresh instead of reusing an older folder.
    """
    from filelock import FileLock

    from bench import assets

    assets.fetch([DEFAULT_ASSET], progress=False)
    spec = assets.get_spec(DEFAULT_ASSET)
    models = assets.cache_root() / "models"
    target = models / f"smollm2-135m-instruct-{spec.sha256[:_HASH_CHARS]}-{_CONVERSION}"
    if (target / "config.json").is_file():
        return target
    models.mkdir(parents=True, exist_ok=True)
    # Two processes starting at once would both spend the conversion; the second waits instead.
    with FileLock(str(models / f".{target.name}.lock")):
        if not (target / "config.json").is_file():
            convert_gguf(assets.asset_dir(DEFAULT_ASSET) / DEFAULT_GGUF, target)
    return target

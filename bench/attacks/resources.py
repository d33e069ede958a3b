"""Offline resources for attack components, built lazily and shared by every Attack instance.

Every published recipe that fetches something at run time gets a pinned, local substitute here:

- word embedding: GloVe 6B 50-d (``glove50`` asset) restricted to its most frequent alphabetic
  words, rows L2-normalised, with a precomputed top-k cosine nearest-neighbour matrix cached on
  disk (stands in for TextAttack's counter-fitted ``paragramcf`` download);
- sentence encoder: all-MiniLM-L6-v2 (``minilm`` asset; mean pooling + L2 normalisation, as its
  sentence-transformers config says) instead of the Universal Sentence Encoder from TF-Hub;
- POS tags and named entities: spaCy ``en_core_web_md`` (``spacy_md`` asset) instead of NLTK's
  perceptron tagger and flair's hub models;
- WordNet 3.0 from the ``wordnet`` asset (repaired by :mod:`bench.attacks.compat`);
- stop-word lists shipped in ``bench/attacks/data``;
- a masked language model only from a local folder the user names.

Nothing here imports TextAttack; the TextAttack classes that use these objects live in
:mod:`bench.attacks.substitutes`. Heavy libraries are imported inside methods.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import AssetError, ModelError, SpecError, shown

# Size of the GloVe vocabulary kept: the paragramcf vocabulary TextAttack's recipes were tuned on
# has 65,713 words; the 65,536 most frequent alphabetic GloVe words are a vocabulary of that size.
DEFAULT_VOCAB_SIZE = 65_536
# Neighbours precomputed per word: the largest candidate count any built-in recipe asks for
# (TextFooler, 50).
DEFAULT_NN_K = 50
# Only plain lower-case words: GloVe's frequent rows include punctuation, numbers and
# fragments that no word-swap attack should propose.
WORD_FILTER = r"^[a-z]+$"
# Bumped when the embedding or neighbour computation changes, so stale caches are not reused.
_NN_FORMAT = 1
_NN_CHUNK = 1024

# spaCy's fine-grained (Penn Treebank) tags -> the 12-tag universal tagset of Petrov et al.
# (2012), which NLTK's ``pos_tag(..., tagset="universal")`` returns and TextAttack's stock
# PartOfSpeech constraint compares. Going through the PTB tag, as NLTK does, keeps NLTK's
# choices: proper nouns are NOUN, modals and auxiliaries VERB, "to" and particles PRT.
PTB_TO_UNIVERSAL: dict[str, str] = {
    **dict.fromkeys(("NN", "NNS", "NNP", "NNPS"), "NOUN"),
    **dict.fromkeys(("VB", "VBD", "VBG", "VBN", "VBP", "VBZ", "MD"), "VERB"),
    **dict.fromkeys(("JJ", "JJR", "JJS"), "ADJ"),
    **dict.fromkeys(("RB", "RBR", "RBS", "WRB"), "ADV"),
    **dict.fromkeys(("PRP", "PRP$", "WP", "WP$"), "PRON"),
    **dict.fromkeys(("DT", "PDT", "WDT", "EX"), "DET"),
    **dict.fromkeys(("RP", "TO", "POS"), "PRT"),
    "IN": "ADP",
    "CC": "CONJ",
    "CD": "NUM",
    **dict.fromkeys(
        (".", ",", ":", "``", "''", '"', "-LRB-", "-RRB-", "#", "$", "HYPH", "NFP"), "."
    ),
    **dict.fromkeys(("UH", "FW", "LS", "SYM", "XX", "ADD", "AFX", "_SP", "SP"), "X"),
}

# spaCy entity labels -> the four classes of flair's English NER model, which TextAttack's
# name/location swaps test for ("PER", and "LOC" inside the tag). Nationalities (NORP) are MISC
# there, as in CoNLL-03.
SPACY_TO_CONLL: dict[str, str] = {
    "PERSON": "PER",
    "GPE": "LOC",
    "LOC": "LOC",
    "FAC": "LOC",
    "ORG": "ORG",
    "NORP": "MISC",
    "EVENT": "MISC",
    "WORK_OF_ART": "MISC",
    "LAW": "MISC",
    "LANGUAGE": "MISC",
    "PRODUCT": "MISC",
}

# Resource names a component can declare, and what their profile entries hash.
ASSET_RESOURCES = ("glove50", "minilm", "spacy_md", "wordnet")
STOPWORD_LISTS = ("english", "textfooler")


def _bounded_put(cache: OrderedDict[Any, Any], key: Any, value: Any, size: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > size:
        cache.popitem(last=False)


# --------------------------------------------------------------------------------------------------
# Sentence encoder


class MiniLMEncoder:
    """all-MiniLM-L6-v2 as sentence-transformers runs it: BERT -> mean pooling -> L2 normalise.

    ``encode`` returns float32 unit vectors; repeated sentences (the unchanged windows TextAttack
    re-encodes at every search step) come from a bounded cache.
    """

    def __init__(
        self,
        folder: Path,
        device: str = "cpu",
        batch_size: int = 64,
        cache_size: int = 1 << 15,
    ) -> None:
        import torch
        import transformers
        from transformers import AutoModel, AutoTokenizer

        self.folder = folder
        self.device = device
        self.batch_size = batch_size
        self.cache_size = cache_size
        self.max_seq_length = _max_seq_length(folder)
        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            model = AutoModel.from_pretrained(
                str(folder), local_files_only=True, use_safetensors=True
            )
        except (OSError, ValueError) as exc:
            raise AssetError(f"cannot load the MiniLM encoder from {folder}: {exc}") from exc
        finally:
            transformers.logging.set_verbosity(verbosity)
        self.model = model.to(device).eval()
        self.dim = int(model.config.hidden_size)
        self._torch = torch
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.stats = {"encoded": 0, "cache_hits": 0}

    def _embed(self, sentences: list[str]) -> np.ndarray:
        torch = self._torch
        encoded = self.tokenizer(
            sentences,
            padding=True,
            truncation=True,
            max_length=self.max_seq_length,
            return_tensors="pt",
        ).to(self.device)
        with torch.inference_mode():
            hidden = self.model(**encoded).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            normed = torch.nn.functional.normalize(pooled, p=2, dim=1)
        out: np.ndarray = normed.float().cpu().numpy()
        return out

    def encode(self, sentences: Sequence[str]) -> np.ndarray:
        """``[len(sentences), dim]`` float32, each row of unit length."""
        out = np.zeros((len(sentences), self.dim), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        for i, text in enumerate(sentences):
            hit = self._cache.get(text)
            if hit is not None:
                out[i] = hit
                self._cache.move_to_end(text)
                self.stats["cache_hits"] += 1
            else:
                missing.setdefault(text, []).append(i)
        # Length-sorted batches pad little: candidates of one step have similar lengths anyway.
        todo = sorted(missing, key=len)
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]
            vectors = self._embed(batch)
            self.stats["encoded"] += len(batch)
            for text, vector in zip(batch, vectors, strict=True):
                out[missing[text]] = vector
                _bounded_put(self._cache, text, vector, self.cache_size)
        return out


def _max_seq_length(folder: Path) -> int:
    # sentence-transformers truncates this model at 256 word pieces (sentence_bert_config.json),
    # not at the tokenizer's 512.
    try:
        config = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
        return int(config["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return 256


# --------------------------------------------------------------------------------------------------
# spaCy tagging of TextAttack's word lists


@dataclass(frozen=True)
class EntityLabel:
    """What TextAttack's name/location swaps read from a flair ``Label``: a BIOES tag and a score.

    spaCy's NER gives no per-entity confidence; every entity gets 1.0.
    """

    value: str
    score: float = 1.0


class SpacyTagger:
    """POS tags and entities for a sequence of words (TextAttack's ``AttackedText.words``).

    The words are tagged as given (a pre-tokenised ``Doc``), so tag i belongs to word i. Results
    are cached per word sequence: a search step re-tags the same contexts many times.
    """

    _POS_PIPES = ("tok2vec", "tagger", "attribute_ruler")

    def __init__(self, nlp: Any, cache_size: int = 1 << 14) -> None:
        self.nlp = nlp
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[tuple[str, ...], bool], Any] = OrderedDict()

    def _doc(self, words: Sequence[str], ner: bool) -> Any:
        from spacy.tokens import Doc

        key = (tuple(words), ner)
        doc = self._cache.get(key)
        if doc is not None:
            self._cache.move_to_end(key)
            return doc
        doc = Doc(self.nlp.vocab, words=list(words))
        wanted = set(self._POS_PIPES) | ({"ner"} if ner else set())
        for name, pipe in self.nlp.pipeline:
            if name in wanted:
                doc = pipe(doc)
        _bounded_put(self._cache, key, doc, self.cache_size)
        return doc

    def universal_tags(self, words: Sequence[str]) -> list[str]:
        """NLTK-universal tags (NOUN, VERB, ADJ, ADV, ..., ".", X) of ``words``."""
        if not words:
            return []
        return [PTB_TO_UNIVERSAL.get(t.tag_, "X") for t in self._doc(words, ner=False)]

    def upos(self, words: Sequence[str]) -> list[str]:
        """Universal Dependencies tags (NOUN, PROPN, AUX, ...), as flair's ``upos`` model gives."""
        if not words:
            return []
        return [t.pos_ for t in self._doc(words, ner=False)]

    def entities(self, words: Sequence[str]) -> list[EntityLabel]:
        """Flair-style BIOES entity tags (``S-PER``, ``B-LOC``, ``E-LOC``, ``O``) of ``words``."""
        if not words:
            return []
        doc = self._doc(words, ner=True)
        labels = [EntityLabel("O")] * len(doc)
        for ent in doc.ents:
            kind = SPACY_TO_CONLL.get(ent.label_)
            if kind is None:
                continue
            if ent.end - ent.start == 1:
                labels[ent.start] = EntityLabel(f"S-{kind}")
                continue
            labels[ent.start] = EntityLabel(f"B-{kind}")
            for i in range(ent.start + 1, ent.end - 1):
                labels[i] = EntityLabel(f"I-{kind}")
            labels[ent.end - 1] = EntityLabel(f"E-{kind}")
        return labels


# --------------------------------------------------------------------------------------------------
# Word embedding


@dataclass(frozen=True)
class EmbeddingData:
    """GloVe rows kept, as plain arrays (TextAttack's ``WordEmbedding`` is built from these)."""

    words: list[str]
    matrix: np.ndarray  # [n, d] float32, unit rows
    nn: np.ndarray  # [n, k + 1] int32; column 0 is the word itself
    build_seconds: float
    from_cache: bool


def nearest_neighbours(matrix: np.ndarray, k: int, chunk: int = _NN_CHUNK) -> np.ndarray:
    """Top-``k`` cosine neighbours of every row of ``matrix`` (unit rows), self in column 0."""
    import torch

    n = matrix.shape[0]
    k = min(k, n - 1)
    full = torch.from_numpy(np.ascontiguousarray(matrix, dtype=np.float32))
    out = np.empty((n, k + 1), dtype=np.int32)
    with torch.inference_mode():
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            sims = full[start:stop] @ full.T
            rows = torch.arange(stop - start)
            # A duplicate vector would tie with the word itself; the word always comes first.
            sims[rows, rows + start] = float("inf")
            out[start:stop] = torch.topk(sims, k + 1, dim=1).indices.numpy()
    return out


def load_glove(
    cache_dir: Path, vocab_size: int = DEFAULT_VOCAB_SIZE, nn_k: int = DEFAULT_NN_K
) -> EmbeddingData:
    """The ``vocab_size`` most frequent alphabetic GloVe words, unit rows, and their neighbours.

    The neighbour matrix is cached in ``cache_dir`` under a name holding the asset hash, the
    vocabulary size, k and a format version; it is written atomically.
    """
    import pandas as pd

    from bench.assets import asset_dir, get_spec

    started = time.perf_counter()
    folder = asset_dir("glove50")
    try:
        words_all = pd.read_parquet(folder / "glove_6B_index.parquet")["index"].tolist()
        vectors = np.load(folder / "glove_6B_50d_emb.npy", mmap_mode="r")
    except (OSError, ValueError, KeyError) as exc:
        raise AssetError(f"cannot read the glove50 asset in {folder}: {exc}") from exc
    pattern = re.compile(WORD_FILTER)
    rows = [i for i, w in enumerate(words_all) if isinstance(w, str) and pattern.fullmatch(w)]
    rows = rows[:vocab_size]
    words = [words_all[i] for i in rows]
    matrix = np.asarray(vectors[rows], dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix /= np.maximum(norms, 1e-12)

    sha = get_spec("glove50").sha256[:12]
    path = cache_dir / f"glove50-{sha}-n{len(rows)}-k{nn_k}-f{_NN_FORMAT}.npy"
    nn: np.ndarray | None = None
    from_cache = False
    if path.is_file():
        try:
            loaded = np.load(path)
            if loaded.shape == (len(rows), min(nn_k, len(rows) - 1) + 1):
                nn, from_cache = loaded, True
        except (OSError, ValueError):
            nn = None
    if nn is None:
        nn = nearest_neighbours(matrix, nn_k)
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".nn-", suffix=".npy", dir=cache_dir)
        try:
            with os.fdopen(fd, "wb") as handle:
                np.save(handle, nn)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return EmbeddingData(words, matrix, nn, time.perf_counter() - started, from_cache)


# --------------------------------------------------------------------------------------------------
# The shared pool


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def check_masked_lm_folder(path: str) -> Path:
    """The folder of a local masked LM, refused early with a message that says what is wrong."""
    from bench.models.identity import TOKENIZER_FILES

    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ModelError(f"masked language model {path} is a file; give its folder")
    if not folder.is_dir():
        raise ModelError(f"masked language model folder {path} does not exist")
    if not (folder / "config.json").is_file():
        raise ModelError(f"masked language model folder {path} has no config.json")
    if not any(folder.glob("*.safetensors")):
        pickles = sorted(p.name for p in folder.glob("*.bin"))
        extra = (
            f" (only pickle weights: {', '.join(pickles)}; convert them to safetensors)"
            if pickles
            else ""
        )
        raise ModelError(f"masked language model folder {path} has no *.safetensors{extra}")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelError(f"masked language model folder {path} has no tokenizer files")
    return folder


class AttackResources:
    """Lazily built, cached heavy objects shared by every attack of a run.

    ``masked_lm`` is a local masked-LM folder (None: attacks that need one are refused).
    ``cache_dir`` holds derived data (the GloVe neighbour matrix); default
    ``<bench cache>/attacks``.
    """

    def __init__(
        self,
        masked_lm: str | None = None,
        device: str = "cpu",
        *,
        cache_dir: Path | None = None,
        vocab_size: int = DEFAULT_VOCAB_SIZE,
        nn_k: int = DEFAULT_NN_K,
    ) -> None:
        from bench.assets import cache_root

        self.masked_lm_path = masked_lm
        self.device = device
        self.cache_dir = Path(cache_dir) if cache_dir is not None else cache_root() / "attacks"
        self.vocab_size = vocab_size
        self.nn_k = nn_k
        self._lock = threading.RLock()
        self._objects: dict[Hashable, Any] = {}
        # Seconds spent building each resource, for reports and tuning.
        self.timings: dict[str, float] = {}

    def _get(self, key: Hashable, build: Any) -> Any:
        with self._lock:
            if key not in self._objects:
                started = time.perf_counter()
                self._objects[key] = build()
                self.timings[str(key)] = time.perf_counter() - started
            return self._objects[key]

    # -- assets -----------------------------------------------------------------------------

    def glove(self) -> EmbeddingData:
        """The GloVe rows and neighbour matrix (arrays, no TextAttack)."""
        result: EmbeddingData = self._get(
            "glove", lambda: load_glove(self.cache_dir, self.vocab_size, self.nn_k)
        )
        return result

    def word_embedding(self) -> Any:
        """A ``textattack.shared.WordEmbedding`` over :meth:`glove` (with its nn matrix)."""

        def build() -> Any:
            from bench.attacks.substitutes import GloveWordEmbedding

            data = self.glove()
            return GloveWordEmbedding(data.matrix, data.words, data.nn)

        return self._get("word_embedding", build)

    def encoder(self) -> MiniLMEncoder:
        """The shared MiniLM sentence encoder (one model, one cache)."""

        def build() -> MiniLMEncoder:
            from bench.assets import asset_dir

            return MiniLMEncoder(asset_dir("minilm"), device=self.device)

        result: MiniLMEncoder = self._get("encoder", build)
        return result

    def spacy(self) -> Any:
        """The spaCy ``en_core_web_md`` pipeline (tagger, attribute ruler, NER), loaded once."""

        def build() -> Any:
            import spacy

            from bench.assets import asset_dir

            folder = asset_dir("spacy_md")
            try:
                return spacy.load(folder, exclude=["parser", "lemmatizer", "senter"])
            except (OSError, ValueError) as exc:
                raise AssetError(f"cannot load spaCy model {folder}: {_first_line(exc)}") from exc

        return self._get("spacy", build)

    def tagger(self) -> SpacyTagger:
        """POS tags and entities over TextAttack word lists, from :meth:`spacy`."""
        result: SpacyTagger = self._get("tagger", lambda: SpacyTagger(self.spacy()))
        return result

    def wordnet(self) -> Any:
        """An NLTK ``WordNetCorpusReader`` over the repaired WordNet 3.0 asset.

        A reader of our own, not ``nltk.corpus.wordnet``: whatever WordNet another library put
        on NLTK's search path, attacks use the pinned one.
        """

        def build() -> Any:
            from nltk.corpus.reader.wordnet import WordNetCorpusReader

            from bench.attacks.compat import ensure_nltk_wordnet

            folder = ensure_nltk_wordnet()
            with warnings.catch_warnings():
                # "multilingual functions are not available": English only, by design.
                warnings.simplefilter("ignore", UserWarning)
                return WordNetCorpusReader(str(folder), None)

        return self._get("wordnet", build)

    def stopwords(self, name: str) -> frozenset[str]:
        """A packaged stop-word list: ``english`` (NLTK's) or ``textfooler``."""
        if name not in STOPWORD_LISTS:
            raise SpecError(
                f"unknown stop-word list {shown(name, 40)}; known: {', '.join(STOPWORD_LISTS)}"
            )

        def build() -> frozenset[str]:
            from bench.attacks.compat import read_word_list

            return frozenset(read_word_list(name))

        result: frozenset[str] = self._get(("stopwords", name), build)
        return result

    def masked_lm(self, attack_name: str = "this attack") -> tuple[Any, Any]:
        """``(model, tokenizer)`` of the user's local masked LM; SpecError when none was given."""
        if not self.masked_lm_path:
            raise SpecError(
                f"attack {attack_name!r} needs a masked language model; pass --masked-lm PATH "
                "(a local masked-LM folder with safetensors weights, e.g. bert-base-uncased)"
            )
        path = self.masked_lm_path

        def build() -> tuple[Any, Any]:
            import transformers
            from transformers import AutoModelForMaskedLM, AutoTokenizer

            folder = check_masked_lm_folder(path)
            verbosity = transformers.logging.get_verbosity()
            transformers.logging.set_verbosity_error()
            try:
                model, info = AutoModelForMaskedLM.from_pretrained(
                    str(folder),
                    local_files_only=True,
                    use_safetensors=True,
                    output_loading_info=True,
                )
                tokenizer = AutoTokenizer.from_pretrained(
                    str(folder), local_files_only=True, use_fast=True
                )
            except (OSError, ValueError, KeyError) as exc:
                raise ModelError(
                    f"cannot load masked language model {path}: {_first_line(exc)}"
                ) from exc
            finally:
                transformers.logging.set_verbosity(verbosity)
            missing = [k for k in info.get("missing_keys", []) if k]
            if missing:
                raise ModelError(
                    f"{path} is not a masked language model (no trained weights for "
                    f"{sorted(missing)[0]}, ...): its masked-LM head would be random"
                )
            if tokenizer.mask_token is None:
                raise ModelError(f"the tokenizer of {path} has no mask token")
            return model.eval(), tokenizer

        result: tuple[Any, Any] = self._get("masked_lm", build)
        return result

    # -- identity ---------------------------------------------------------------------------

    def resource_hashes(self, names: Iterable[str]) -> dict[str, str]:
        """``{resource: sha256}``: the pinned archive hash of an asset, the content hash of the
        masked-LM folder, the hash of a packaged stop-word list (``stopwords:<list>``)."""
        from bench.assets import get_spec

        out: dict[str, str] = {}
        for name in sorted(set(names)):
            if name in ASSET_RESOURCES:
                out[name] = get_spec(name).sha256
            elif name == "masked_lm":
                from bench.models.identity import folder_hash

                if not self.masked_lm_path:
                    out[name] = "none"
                else:
                    out[name] = folder_hash(check_masked_lm_folder(self.masked_lm_path))
            elif name.startswith("stopwords:"):
                from bench.specs import sha256_text

                words = sorted(self.stopwords(name.split(":", 1)[1]))
                out[name] = sha256_text("\n".join(words))
            else:
                raise ValueError(f"unknown attack resource {name!r}")
        return out

    def resource_settings(self, names: Iterable[str]) -> dict[str, Any]:
        """How each used resource is turned into a component (enters the attack profile)."""
        settings: dict[str, Any] = {}
        wanted = set(names)
        if "glove50" in wanted:
            settings["word_embedding"] = {
                "source": "glove50",
                "vocab_size": self.vocab_size,
                "word_filter": WORD_FILTER,
                "rows": "l2-normalised",
                "nn_k": self.nn_k,
                "nn_metric": "cosine",
                "format": _NN_FORMAT,
            }
        if "minilm" in wanted:
            settings["sentence_encoder"] = {
                "source": "minilm",
                "pooling": "mean",
                "normalise": "l2",
                "max_seq_length": 256,
            }
        if "spacy_md" in wanted:
            settings["tagger"] = {
                "source": "spacy_md",
                "pos": "ptb->universal (NLTK tagset)",
                "ner": "spacy->conll BIOES, score 1.0",
            }
        if "wordnet" in wanted:
            settings["wordnet"] = {"source": "wordnet", "version": "3.0", "exc_files": "empty"}
        return settings

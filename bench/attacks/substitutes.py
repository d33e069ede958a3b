"""TextAttack components that take their resources as constructor arguments.

Each class here replaces a stock TextAttack 0.3.11 component whose constructor or first call
fetches something from the network (or crashes on a file the wheel lacks). They keep the stock
behaviour wherever the substitute resource allows it; what differs is listed in each docstring and
in the recipes' deviations. Importing this module imports TextAttack (through
:mod:`bench.attacks.compat`), so it is itself imported lazily.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.attacks.compat import load_textattack
from bench.errors import BenchError

if TYPE_CHECKING:
    from bench.attacks.resources import MiniLMEncoder, SpacyTagger

_ta = load_textattack()

from textattack.constraints.grammaticality import PartOfSpeech  # noqa: E402
from textattack.constraints.semantics.sentence_encoders import SentenceEncoder  # noqa: E402
from textattack.shared import WordEmbedding  # noqa: E402
from textattack.shared.utils import is_one_word  # noqa: E402
from textattack.transformations import (  # noqa: E402
    WordSwap,
    WordSwapChangeLocation,
    WordSwapChangeName,
    WordSwapHomoglyphSwap,
    WordSwapInflections,
    WordSwapWordNet,
)
from textattack.transformations.word_merges import WordMergeMaskedLM  # noqa: E402


class GloveWordEmbedding(WordEmbedding):
    """``WordEmbedding`` over unit-length rows with a precomputed neighbour matrix.

    Distances are plain NumPy on the rows: the stock methods copy both vectors to TextAttack's
    global device (a GPU when one exists) for every pair and memoise every pair in a dict that
    only grows.
    """

    def __init__(self, matrix: np.ndarray, words: Sequence[str], nn_matrix: np.ndarray) -> None:
        index2word = list(words)
        word2index = {w: i for i, w in enumerate(index2word)}
        super().__init__(matrix, word2index, index2word, nn_matrix)

    def _index(self, item: int | str) -> int:
        return self._word2index[item] if isinstance(item, str) else int(item)

    def get_cos_sim(self, a: int | str, b: int | str) -> float:
        e1 = self.embedding_matrix[self._index(a)]
        e2 = self.embedding_matrix[self._index(b)]
        return float(np.dot(e1, e2))

    def get_mse_dist(self, a: int | str, b: int | str) -> float:
        # TextAttack's "MSE" is the squared Euclidean distance (a sum, not a mean).
        diff = self.embedding_matrix[self._index(a)] - self.embedding_matrix[self._index(b)]
        return float(np.dot(diff, diff))

    def nearest_neighbours(self, index: int | str, topn: int) -> list[int]:
        row = self.nn_matrix[self._index(index)]
        return [int(i) for i in row[1 : topn + 1]]

    def __repr__(self) -> str:
        return f"GloveWordEmbedding(words={len(self._index2word)}, k={self.nn_matrix.shape[1] - 1})"


class MiniLMSentenceEncoder(SentenceEncoder):
    """The sentence-encoder constraint with MiniLM (shared :class:`MiniLMEncoder`) instead of
    the Universal Sentence Encoder. Scores, windows and thresholds work as in the stock class."""

    def __init__(self, encoder: MiniLMEncoder, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.encoder = encoder

    @property
    def model(self) -> MiniLMSentenceEncoder:
        # The stock single-text check calls ``self.model.encode``.
        return self

    def encode(self, sentences: Sequence[str]) -> np.ndarray:
        return self.encoder.encode(list(sentences))

    def extra_repr_keys(self) -> list[str]:
        return ["encoder_name", *super().extra_repr_keys()]

    @property
    def encoder_name(self) -> str:
        return "all-MiniLM-L6-v2"


class SpacyPartOfSpeech(PartOfSpeech):
    """The part-of-speech constraint with spaCy tags mapped to NLTK's universal tagset.

    Stock tags a window of 4 words either side with NLTK's perceptron tagger (a download); this
    tags the same window with spaCy and maps its Penn Treebank tags the way NLTK does. One
    difference: stock looks the word up by its first occurrence in the window, this by position.
    """

    def __init__(
        self,
        tagger: SpacyTagger,
        allow_verb_noun_swap: bool = True,
        compare_against_original: bool = True,
    ) -> None:
        super().__init__(
            tagger_type="nltk",
            tagset="universal",
            allow_verb_noun_swap=allow_verb_noun_swap,
            compare_against_original=compare_against_original,
        )
        self.tagger_type = "spacy"
        self._tagger = tagger

    def _get_pos(self, before_ctx: list[str], word: str, after_ctx: list[str]) -> str:
        words = [*before_ctx, word, *after_ctx]
        key = " ".join(words)
        if key in self._pos_tag_cache:
            tags = self._pos_tag_cache[key]
        else:
            tags = self._tagger.universal_tags(words)
            self._pos_tag_cache[key] = tags
        return str(tags[len(before_ctx)])


class OfflineWordSwapWordNet(WordSwapWordNet):
    """WordNet synonym swap over an explicit corpus reader.

    Stock calls ``nltk.download("omw-1.4")`` in its constructor and reads the global
    ``nltk.corpus.wordnet``. Candidates are the same: every single-word lemma of every synset of
    the word, other than the word itself.
    """

    def __init__(self, reader: Any, **kwargs: Any) -> None:
        WordSwap.__init__(self, **kwargs)
        self.language = "eng"
        self._reader = reader

    def _get_replacement_words(self, word: str, random: bool = False) -> list[str]:
        found: set[str] = set()
        for synset in self._reader.synsets(word):
            for lemma in synset.lemma_names():
                # Multi-word lemmas ("domestic_dog") would change the word count.
                if lemma != word and "_" not in lemma and is_one_word(lemma):
                    found.add(lemma)
        return sorted(found)


class OfflineHomoglyphSwap(WordSwapHomoglyphSwap):
    """Homoglyph swap that works without ``intentional_homoglyphs.txt``.

    The 0.3.11 wheel lacks that file and the stock constructor crashes opening it. The file only
    feeds differential-evolution search (BadCharacters), which is not offered; the word-level
    swaps TextBugger uses come from the inline table, which the stock constructor sets before it
    opens the file.
    """

    def __init__(self, random_one: bool = False, **kwargs: Any) -> None:
        with contextlib.suppress(FileNotFoundError):
            super().__init__(random_one=random_one, **kwargs)
        if not getattr(self, "homos", None):
            raise BenchError(
                "TextAttack's WordSwapHomoglyphSwap no longer sets its homoglyph table before "
                f"reading intentional_homoglyphs.txt (textattack {_ta_version()}); update "
                "bench.attacks.substitutes"
            )
        self.random_one = random_one
        self.homos_intentional: dict[str, list[str]] = {}


def _ta_version() -> str:
    from bench.attacks.compat import textattack_version

    return textattack_version()


class _TaggedText:
    """An ``AttackedText`` seen through spaCy: POS and entity lookups answered by the tagger,
    everything else delegated. Replacements made through it return ordinary ``AttackedText``s."""

    def __init__(self, text: Any, tagger: SpacyTagger) -> None:
        self._text = text
        self._tagger = tagger

    def __getattr__(self, name: str) -> Any:
        return getattr(self._text, name)

    def _per_input(self, tag: Any) -> list[Any]:
        # Each input column is tagged on its own: an entity never spans premise and hypothesis.
        out: list[Any] = []
        for words in self._text.words_per_input:
            out.extend(tag(words))
        if len(out) != len(self._text.words):  # tokenised differently once joined: tag as one
            return list(tag(self._text.words))
        return out

    def ner_of_word_index(self, index: int, model_name: str = "ner") -> Any:
        return self._per_input(self._tagger.entities)[index]

    def pos_of_word_index(self, index: int) -> str:
        return str(self._per_input(self._tagger.upos)[index])


class SpacyChangeName(WordSwapChangeName):
    """Person-name swap with spaCy entities (PERSON) instead of flair's hub NER model.

    spaCy gives no confidence, so ``confidence_score`` never filters.
    """

    def __init__(self, tagger: SpacyTagger, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tagger = tagger

    def _get_transformations(self, current_text: Any, indices_to_modify: Any) -> Any:
        view = _TaggedText(current_text, self._tagger)
        return super()._get_transformations(view, indices_to_modify)


class SpacyChangeLocation(WordSwapChangeLocation):
    """Location swap with spaCy entities (GPE, LOC, FAC) instead of flair's hub NER model;
    replacements come from TextAttack's own country/nationality/city lists, as in stock."""

    def __init__(self, tagger: SpacyTagger, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tagger = tagger

    def _get_transformations(self, current_text: Any, indices_to_modify: Any) -> Any:
        view = _TaggedText(current_text, self._tagger)
        return super()._get_transformations(view, indices_to_modify)


class SpacyInflections(WordSwapInflections):
    """Inflection swap with spaCy's UPOS tags instead of flair's ``upos-fast`` hub model."""

    def __init__(self, tagger: SpacyTagger, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tagger = tagger

    def _get_transformations(self, current_text: Any, indices_to_modify: Any) -> Any:
        view = _TaggedText(current_text, self._tagger)
        return super()._get_transformations(view, indices_to_modify)


class SpacyMaskedLMMerge(WordMergeMaskedLM):
    """Masked-LM word merge (CLARE) with spaCy's UPOS tags choosing the mergeable word pairs,
    instead of flair's ``upos-fast`` hub model."""

    def __init__(self, tagger: SpacyTagger, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tagger = tagger

    def _get_transformations(self, current_text: Any, indices_to_modify: Any) -> Any:
        view = _TaggedText(current_text, self._tagger)
        return super()._get_transformations(view, indices_to_modify)

"""Built-in attack recipes: TextAttack 0.3.11's published recipes as compositions (data).

Each recipe reproduces the composition of the TextAttack recipe class it follows (components,
parameters, constraint order, search) wherever an offline resource allows it. Where it cannot,
the recipe carries a ``variant`` name that says what differs (``textfooler-glove-minilm``) and a
list of deviations in words; thresholds of substituted resources are recalibrated as documented
in ``docs/attacks.md``. A recipe whose variant is None is faithful to the published one.

Recipe parameters a suite may override are written ``"$name"`` inside the composition and
declared with their defaults; any other override is an error. Overriding a parameter away from
its default adds ``-modified`` to the variant name and a deviation that lists the change.

Columns: in a task with several inputs the attack modifies only the attacked columns (by default
the last one, the hypothesis of an NLI pair) whatever the published recipe did; the columns are
part of the attack profile.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from bench.attacks.specs import AttackSpec, CompositionSpec
from bench.errors import SpecError, listing, shown


@dataclass(frozen=True)
class Published:
    """The TextAttack recipe class and the paper a recipe follows."""

    recipe_class: str
    paper: str
    url: str

    def to_data(self) -> dict[str, str]:
        return {"recipe_class": self.recipe_class, "paper": self.paper, "url": self.url}


@dataclass(frozen=True)
class Recipe:
    name: str
    published: Published
    # None when the composition is the published one; else a name that says what differs.
    variant: str | None
    deviations: tuple[str, ...]
    composition: Mapping[str, Any]
    # Overridable parameters ("$name" in the composition) with their defaults.
    params: Mapping[str, Any] = field(default_factory=dict)
    needs_masked_lm: bool = False
    description: str = ""


@dataclass(frozen=True)
class ResolvedAttack:
    """An attack of a suite, ready to build: its composition and its honest labels."""

    name: str
    recipe: str | None
    variant: str | None
    published: Published | None
    deviations: tuple[str, ...]
    composition: CompositionSpec
    needs_masked_lm: bool
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def display_name(self) -> str:
        """The variant name when the attack differs from the published recipe, else the
        recipe's (an explicit composition: the attack's own name)."""
        return self.variant or self.recipe or self.name


def _c(type_: str, **params: Any) -> dict[str, Any]:
    return {"type": type_, "params": params}


_GREEDY_WIR_DELETE = _c("greedy_wir", wir_method="delete")
_USE_SUB = (
    "sentence similarity from all-MiniLM-L6-v2 instead of the Universal Sentence Encoder "
    "(threshold kept at the published value; see docs/attacks.md for its measured effect)"
)
_GLOVE_SUB = (
    "word neighbours from GloVe 6B 50-d (65,536 most frequent alphabetic words, cosine) instead "
    "of counter-fitted paragram vectors: neighbours are related words, antonyms included"
)
_POS_SUB = "part-of-speech tags from spaCy en_core_web_md instead of NLTK's perceptron tagger"
_MLM_SUB = "masked language model: the user's local folder (published: {model})"

RECIPES: dict[str, Recipe] = {}


def _add(recipe: Recipe) -> None:
    RECIPES[recipe.name] = recipe


_add(
    Recipe(
        name="deepwordbug",
        published=Published(
            "DeepWordBugGao2018",
            "Gao et al. 2018, Black-box Generation of Adversarial Text Sequences to Evade Deep "
            "Learning Classifiers",
            "https://arxiv.org/abs/1801.04354",
        ),
        variant=None,
        deviations=(),
        description="character edits (swap, substitute, delete, insert) on the most important words",
        composition={
            "transformation": _c(
                "composite",
                of=[
                    _c("neighbouring_char_swap"),
                    _c("random_char_substitution"),
                    _c("random_char_deletion"),
                    _c("random_char_insertion"),
                ],
            ),
            "constraints": [
                _c("repeat"),
                _c("stopword"),
                _c("levenshtein", max_edit_distance="$max_edit_distance"),
            ],
            "search": _c("greedy_wir", wir_method="unk"),
        },
        params={"max_edit_distance": 30},
    )
)

_add(
    Recipe(
        name="pruthi",
        published=Published(
            "Pruthi2019",
            "Pruthi et al. 2019, Combating Adversarial Misspellings with Robust Word Recognition",
            "https://arxiv.org/abs/1905.11268",
        ),
        variant=None,
        deviations=(),
        description="one typo (swap, delete, insert, QWERTY key) inside a word of 4+ letters",
        composition={
            "transformation": _c(
                "composite",
                of=[
                    _c(t, random_one=False, skip_first_char=True, skip_last_char=True)
                    for t in (
                        "neighbouring_char_swap",
                        "random_char_deletion",
                        "random_char_insertion",
                        "qwerty",
                    )
                ],
            ),
            "constraints": [
                _c("min_word_length", min_length=4),
                _c("stopword"),
                _c("max_words_perturbed", max_num_words="$max_num_word_swaps"),
                _c("repeat"),
            ],
            "search": _c("greedy"),
        },
        params={"max_num_word_swaps": 1},
    )
)

_TEXTBUGGER_CHAR_BUGS = [
    _c(
        "random_char_insertion",
        random_one=True,
        letters_to_insert=" ",
        skip_first_char=True,
        skip_last_char=True,
    ),
    _c("random_char_deletion", random_one=True, skip_first_char=True, skip_last_char=True),
    _c("neighbouring_char_swap", random_one=True, skip_first_char=True, skip_last_char=True),
    _c("homoglyph"),
]
_TEXTBUGGER = Published(
    "TextBuggerLi2018",
    "Li et al. 2019, TextBugger: Generating Adversarial Text Against Real-world Applications",
    "https://arxiv.org/abs/1812.05271",
)

_add(
    Recipe(
        name="textbugger",
        published=_TEXTBUGGER,
        variant="textbugger-glove-minilm",
        deviations=(_GLOVE_SUB, _USE_SUB),
        description="TextBugger's character bugs plus word swaps for embedding neighbours",
        composition={
            "transformation": _c(
                "composite",
                of=[*_TEXTBUGGER_CHAR_BUGS, _c("embedding", max_candidates="$max_candidates")],
            ),
            "constraints": [
                _c("repeat"),
                _c("stopword"),
                _c("sentence_encoder", threshold="$use_threshold"),
            ],
            "search": _GREEDY_WIR_DELETE,
        },
        params={"max_candidates": 5, "use_threshold": 0.8},
    )
)

_add(
    Recipe(
        name="textbugger-char",
        published=_TEXTBUGGER,
        variant="textbugger-charlevel",
        deviations=(
            "character-level bugs only (inserted space, deleted and swapped characters, "
            "homoglyphs); the word-level bug (embedding neighbours) is left out",
            "no sentence-encoder constraint (published: USE cosine >= 0.8)",
        ),
        description="TextBugger's character bugs, homoglyphs included; no word swaps",
        composition={
            "transformation": _c("composite", of=list(_TEXTBUGGER_CHAR_BUGS)),
            "constraints": [_c("repeat"), _c("stopword")],
            "search": _GREEDY_WIR_DELETE,
        },
    )
)

_add(
    Recipe(
        name="pwws",
        published=Published(
            "PWWSRen2019",
            "Ren et al. 2019, Generating Natural Language Adversarial Examples through "
            "Probability Weighted Word Saliency",
            "https://www.aclweb.org/anthology/P19-1103/",
        ),
        variant=None,
        deviations=(),
        description="WordNet synonyms, words ordered by probability-weighted saliency",
        composition={
            "transformation": _c("wordnet"),
            "constraints": [_c("repeat"), _c("stopword")],
            "search": _c("greedy_wir", wir_method="weighted-saliency"),
        },
    )
)

_add(
    Recipe(
        name="textfooler",
        published=Published(
            "TextFoolerJin2019",
            "Jin et al. 2020, Is BERT Really Robust? A Strong Baseline for Natural Language "
            "Attack on Text Classification and Entailment",
            "https://arxiv.org/abs/1907.11932",
        ),
        variant="textfooler-glove-minilm",
        deviations=(
            _GLOVE_SUB,
            "word-embedding cosine threshold recalibrated for GloVe 50-d: 0.75 (published 0.5 "
            "on counter-fitted vectors, which keeps all 50 GloVe neighbours of every word)",
            _USE_SUB,
            _POS_SUB,
        ),
        description="embedding neighbours filtered by cosine, part of speech and sentence "
        "similarity; words ordered by deletion importance",
        composition={
            "transformation": _c("embedding", max_candidates="$max_candidates"),
            "constraints": [
                _c("repeat"),
                _c("stopword", list="textfooler"),
                _c("word_embedding_distance", min_cos_sim="$min_cos_sim"),
                _c("part_of_speech", allow_verb_noun_swap=True),
                _c(
                    "sentence_encoder",
                    threshold="$use_threshold",
                    metric="angular",
                    compare_against_original=False,
                    window_size=15,
                    skip_text_shorter_than_window=True,
                ),
            ],
            "search": _GREEDY_WIR_DELETE,
        },
        params={"max_candidates": 50, "min_cos_sim": 0.75, "use_threshold": 0.840845057},
    )
)

_add(
    Recipe(
        name="checklist",
        published=Published(
            "CheckList2020",
            "Ribeiro et al. 2020, Beyond Accuracy: Behavioral Testing of NLP Models with CheckList",
            "https://arxiv.org/abs/2005.04118",
        ),
        variant="checklist-spacy-ner",
        deviations=(
            "person and location entities from spaCy en_core_web_md NER instead of flair's "
            "'ner' model; spaCy gives no confidence, so the 0.7 confidence filter never applies",
        ),
        description="invariance edits: contractions, names, numbers, locations",
        composition={
            "transformation": _c(
                "composite",
                of=[
                    _c("extend"),
                    _c("contract"),
                    _c("change_name"),
                    _c("change_number"),
                    _c("change_location"),
                ],
            ),
            "constraints": [_c("repeat")],
            "search": _c("greedy"),
        },
    )
)

_add(
    Recipe(
        name="pso",
        published=Published(
            "PSOZang2020",
            "Zang et al. 2020, Word-level Textual Adversarial Attacking as Combinatorial "
            "Optimization",
            "https://www.aclweb.org/anthology/2020.acl-main.540.pdf",
        ),
        variant="pso-wordnet",
        deviations=(
            "substitutes are WordNet 3.0 synonyms instead of HowNet sememe-based candidates "
            "(HowNet needs a download): a different candidate space, so a different method",
        ),
        description="particle swarm search over WordNet synonyms",
        composition={
            "transformation": _c("wordnet"),
            "constraints": [_c("repeat"), _c("stopword")],
            "search": _c("particle_swarm", pop_size="$pop_size", max_iters="$max_iters"),
        },
        params={"pop_size": 60, "max_iters": 20},
    )
)

_NO_LM = (
    "the language-model constraint ({lm}) is dropped (it needs a download): candidates are not "
    "checked for fluency, a different method"
)

_add(
    Recipe(
        name="faster-genetic",
        published=Published(
            "FasterGeneticAlgorithmJia2019",
            "Jia et al. 2019, Certified Robustness to Adversarial Word Substitutions",
            "https://arxiv.org/abs/1909.00986",
        ),
        variant="faster-genetic-glove-nolm",
        deviations=(
            _GLOVE_SUB,
            "the embedding-distance threshold keeps its published value, max squared distance "
            "0.5, which on unit-length GloVe rows means cosine >= 0.75 (the floor TextFooler's "
            "GloVe variant uses)",
            _NO_LM.format(lm="learning-to-write LM, window 6, max log-prob drop 5"),
        ),
        description="genetic search over embedding neighbours, at most 20% of words changed",
        composition={
            "transformation": _c("embedding", max_candidates="$max_candidates"),
            "constraints": [
                _c("repeat"),
                _c("stopword"),
                _c("max_words_perturbed", max_percent=0.2),
                _c("word_embedding_distance", max_mse_dist="$max_mse_dist"),
            ],
            "search": _c(
                "alzantot_genetic",
                pop_size="$pop_size",
                max_iters="$max_iters",
                post_crossover_check=False,
            ),
        },
        params={"max_candidates": 8, "max_mse_dist": 0.5, "pop_size": 60, "max_iters": 40},
    )
)

_add(
    Recipe(
        name="alzantot",
        published=Published(
            "GeneticAlgorithmAlzantot2018",
            "Alzantot et al. 2018, Generating Natural Language Adversarial Examples",
            "https://arxiv.org/abs/1804.07998",
        ),
        variant="alzantot-glove-nolm",
        deviations=(
            _GLOVE_SUB,
            "the embedding-distance threshold keeps its published value, max squared distance "
            "0.5 (cosine >= 0.75 on unit-length GloVe rows)",
            _NO_LM.format(lm="Google 1-billion-words LM, top 4 per index"),
        ),
        description="genetic search over embedding neighbours (Alzantot et al.)",
        composition={
            "transformation": _c("embedding", max_candidates="$max_candidates"),
            "constraints": [
                _c("repeat"),
                _c("stopword"),
                _c("max_words_perturbed", max_percent=0.2),
                _c(
                    "word_embedding_distance",
                    max_mse_dist="$max_mse_dist",
                    compare_against_original=False,
                ),
            ],
            "search": _c(
                "alzantot_genetic",
                pop_size="$pop_size",
                max_iters="$max_iters",
                post_crossover_check=False,
            ),
        },
        params={"max_candidates": 8, "max_mse_dist": 0.5, "pop_size": 60, "max_iters": 20},
    )
)

_add(
    Recipe(
        name="bae",
        published=Published(
            "BAEGarg2019",
            "Garg and Ramakrishnan 2020, BAE: BERT-based Adversarial Examples for Text "
            "Classification",
            "https://arxiv.org/abs/2004.01970",
        ),
        variant="bae-minilm",
        deviations=(
            _USE_SUB,
            _POS_SUB,
            _MLM_SUB.format(model="bert-base-uncased"),
        ),
        description="BAE-R: replace words with masked-LM predictions",
        composition={
            "transformation": _c(
                "masked_lm", method="bae", max_candidates="$max_candidates", min_confidence=0.0
            ),
            "constraints": [
                _c("repeat"),
                _c("stopword"),
                _c("part_of_speech", allow_verb_noun_swap=True),
                _c(
                    "sentence_encoder",
                    threshold="$use_threshold",
                    metric="cosine",
                    compare_against_original=True,
                    window_size=15,
                    skip_text_shorter_than_window=True,
                ),
            ],
            "search": _GREEDY_WIR_DELETE,
        },
        params={"max_candidates": 50, "use_threshold": 0.936338023},
        needs_masked_lm=True,
    )
)

_add(
    Recipe(
        name="bert-attack",
        published=Published(
            "BERTAttackLi2020",
            "Li et al. 2020, BERT-ATTACK: Adversarial Attack Against BERT Using BERT",
            "https://arxiv.org/abs/2004.09984",
        ),
        variant="bert-attack-minilm",
        deviations=(_USE_SUB, _MLM_SUB.format(model="bert-base-uncased")),
        description="sub-word masked-LM replacements, words ordered by [UNK] importance",
        composition={
            "transformation": _c(
                "masked_lm", method="bert-attack", max_candidates="$max_candidates"
            ),
            "constraints": [
                _c("repeat"),
                _c("stopword"),
                _c("max_words_perturbed", max_percent=0.4),
                _c(
                    "sentence_encoder",
                    threshold="$use_threshold",
                    metric="cosine",
                    compare_against_original=True,
                    window_size=None,
                ),
            ],
            "search": _c("greedy_wir", wir_method="unk"),
        },
        params={"max_candidates": 8, "use_threshold": 0.2},
        needs_masked_lm=True,
    )
)

_CLARE_MLM = {"max_candidates": 50}
_add(
    Recipe(
        name="clare",
        published=Published(
            "CLARE2020",
            "Li et al. 2021, Contextualized Perturbation for Textual Adversarial Attack",
            "https://arxiv.org/abs/2009.07502",
        ),
        variant="clare-minilm",
        deviations=(
            _USE_SUB,
            _MLM_SUB.format(model="distilroberta-base"),
            "the word pairs the merge step considers come from spaCy UPOS tags instead of "
            "flair's upos-fast model",
        ),
        description="masked-LM replace, insert and merge, greedy search",
        composition={
            "transformation": _c(
                "composite",
                of=[
                    _c("masked_lm", method="bae", min_confidence=5e-4, **_CLARE_MLM),
                    _c("masked_lm_insertion", min_confidence=0.0, **_CLARE_MLM),
                    _c("masked_lm_merge", min_confidence=5e-3, **_CLARE_MLM),
                ],
            ),
            "constraints": [
                _c("repeat"),
                _c("stopword"),
                _c(
                    "sentence_encoder",
                    threshold="$use_threshold",
                    metric="cosine",
                    compare_against_original=True,
                    window_size=15,
                    skip_text_shorter_than_window=True,
                ),
            ],
            "search": _c("greedy"),
        },
        params={"use_threshold": 0.7},
        needs_masked_lm=True,
    )
)


# --------------------------------------------------------------------------------------------------
# Resolution


def _substitute(value: Any, params: Mapping[str, Any]) -> Any:
    if isinstance(value, str) and value.startswith("$"):
        return params[value[1:]]
    if isinstance(value, dict):
        return {k: _substitute(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, params) for v in value]
    return value


def _same_type(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    return isinstance(value, type(default))


def recipe_names() -> list[str]:
    return sorted(RECIPES)


def get_recipe(name: str) -> Recipe:
    recipe = RECIPES.get(name)
    if recipe is None:
        raise SpecError(
            f"unknown attack recipe {shown(name, 40)} (known: {', '.join(recipe_names())})"
        )
    return recipe


def _composition(data: Mapping[str, Any], attack_name: str) -> CompositionSpec:
    from bench.specs import validation_message

    try:
        return CompositionSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"attack {attack_name!r}: composition {validation_message(exc)}") from None


def resolve(attack: AttackSpec) -> ResolvedAttack:
    """The composition and labels of a suite's attack (a recipe with overrides, or a custom
    composition). Validates every component and parameter; builds nothing."""
    from bench.attacks.components import resolve_composition

    if attack.composition is not None:
        resolved = resolve_composition(attack.composition, attack.name)
        return ResolvedAttack(
            name=attack.name,
            recipe=None,
            variant=None,
            published=None,
            deviations=("custom composition: not a published recipe",),
            composition=attack.composition,
            needs_masked_lm=resolved.needs_masked_lm,
        )
    assert attack.recipe is not None
    recipe = get_recipe(attack.recipe)
    unknown = sorted(set(attack.params) - set(recipe.params))
    if unknown:
        allowed = listing(sorted(recipe.params), 10, 24) or "none"
        raise SpecError(
            f"attack {attack.name!r}: recipe {recipe.name!r} has no parameter "
            f"{shown(unknown[0], 30)} (allowed: {allowed})"
        )
    for key, value in attack.params.items():
        default = recipe.params[key]
        if not _same_type(default, value):
            raise SpecError(
                f"attack {attack.name!r}: recipe parameter {key!r} must be of the type of its "
                f"default {default!r}, got {shown(value, 40)}"
            )
    params = {**recipe.params, **attack.params}
    changed = {k: v for k, v in attack.params.items() if v != recipe.params[k]}
    composition = _composition(
        _substitute(copy.deepcopy(dict(recipe.composition)), params), attack.name
    )
    resolve_composition(composition, attack.name)
    variant = recipe.variant
    deviations = recipe.deviations
    if changed:
        variant = f"{recipe.variant or recipe.name}-modified"
        listed = ", ".join(
            f"{k}={v!r} (recipe: {recipe.params[k]!r})" for k, v in sorted(changed.items())
        )
        deviations = (*deviations, f"parameters changed from the recipe: {listed}")
    return ResolvedAttack(
        name=attack.name,
        recipe=recipe.name,
        variant=variant,
        published=recipe.published,
        deviations=deviations,
        composition=composition,
        needs_masked_lm=recipe.needs_masked_lm,
        params=params,
    )

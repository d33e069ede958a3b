"""The allow-list of attack components, and how a composition becomes a TextAttack ``Attack``.

Every goal function, transformation, constraint and search method an attack may name is listed
here with its parameters (type, default, allowed values). A composition is validated against
this registry before anything is built; unknown names or parameters are a SpecError that names
the attack and the offending key. Defaults are filled in, so two compositions that build the
same attack have the same profile and hash.

Components whose stock TextAttack class would fetch something are built from
:class:`~bench.attacks.resources.AttackResources` through :mod:`bench.attacks.substitutes`; each
such component states its substitution, which enters the attack profile.

This module imports TextAttack only inside :func:`build_attack`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from bench.attacks.specs import ComponentSpec, CompositionSpec
from bench.errors import SpecError, did_you_mean, listing, shown
from bench.specs import canonical_json, sha256_text

if TYPE_CHECKING:
    from bench.attacks.recipes import ResolvedAttack
    from bench.attacks.resources import AttackResources

Kind = Literal["goal", "transformation", "constraint", "search"]
KINDS: tuple[Kind, ...] = ("goal", "transformation", "constraint", "search")
PROFILE_FORMAT = 1

ParamType = Literal["int", "float", "bool", "str", "str_list", "components"]


@dataclass(frozen=True)
class Param:
    """One constructor parameter: JSON type, default (the stock TextAttack value), limits."""

    type: ParamType
    default: Any = None
    nullable: bool = False
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    doc: str = ""


Builder = Callable[[dict[str, Any], "BuildContext", Any], Any]


@dataclass(frozen=True)
class Component:
    kind: Kind
    name: str
    doc: str
    params: Mapping[str, Param]
    build: Builder
    # Resources (see AttackResources.resource_hashes) the component uses, given its parameters.
    resources: Callable[[dict[str, Any]], tuple[str, ...]] = lambda params: ()
    # What replaces a stock resource that needs the network, in words (None: stock behaviour).
    substitution: str | None = None
    # Extra validation across parameters; returns an error message or None.
    check: Callable[[dict[str, Any]], str | None] = lambda params: None
    needs_masked_lm: bool = False


@dataclass
class BuildContext:
    """What building an attack needs beyond its composition."""

    resources: AttackResources
    # The task's input columns, in order (the keys of the AttackedText's OrderedDict).
    input_columns: list[str]
    # Columns the attack may modify; None: the last column (the hypothesis of a pair).
    attack_columns: set[str] | None = None
    query_budget: int | None = None
    model_batch_size: int = 32
    attack_name: str = "attack"

    def modifiable_columns(self) -> list[str]:
        """The attacked columns, in input order; SpecError for a column the task lacks."""
        if not self.input_columns:
            raise SpecError(f"attack {self.attack_name!r}: the task has no input columns")
        wanted = self.attack_columns or {self.input_columns[-1]}
        unknown = sorted(set(wanted) - set(self.input_columns))
        if unknown:
            raise SpecError(
                f"attack {self.attack_name!r}: cannot attack column(s) {listing(unknown, 3)}; "
                f"the task's inputs are {listing(self.input_columns, 3)}"
            )
        return [c for c in self.input_columns if c in wanted]


# --------------------------------------------------------------------------------------------------
# Builders (TextAttack imported lazily, inside each)


def _ta() -> Any:
    from bench.attacks.compat import load_textattack

    return load_textattack()


def _sub() -> Any:
    from bench.attacks import substitutes

    return substitutes


def _goal(cls_name: str) -> Builder:
    def build(params: dict[str, Any], ctx: BuildContext, wrapper: Any) -> Any:
        cls = getattr(_ta().goal_functions, cls_name)
        budget = float("inf") if ctx.query_budget is None else ctx.query_budget
        return cls(wrapper, query_budget=budget, model_batch_size=ctx.model_batch_size, **params)

    return build


def _plain(path: str) -> Builder:
    """A stock class (dotted path below ``textattack``) that takes our parameters as they are."""

    def build(params: dict[str, Any], ctx: BuildContext, wrapper: Any) -> Any:
        cls = _ta()
        for part in path.split("."):
            cls = getattr(cls, part)
        return cls(**params)

    return build


def _char_params(random_one: bool = True, skips: bool = False) -> dict[str, Param]:
    return {
        "random_one": Param("bool", random_one, doc="one random edit per word (else all edits)"),
        "skip_first_char": Param("bool", skips, doc="never edit a word's first character"),
        "skip_last_char": Param("bool", skips, doc="never edit a word's last character"),
    }


def _build_composite(params: dict[str, Any], ctx: BuildContext, wrapper: Any) -> Any:
    parts = [_build_component("transformation", spec, ctx, wrapper) for spec in params["of"]]
    return _ta().transformations.CompositeTransformation(parts)


def _build_insertion(params: dict[str, Any], ctx: BuildContext, wrapper: Any) -> Any:
    args = dict(params)
    letters = args.pop("letters_to_insert")
    return _ta().transformations.WordSwapRandomCharacterInsertion(letters_to_insert=letters, **args)


def _build_homoglyph(params: dict[str, Any], ctx: BuildContext, wrapper: Any) -> Any:
    return _sub().OfflineHomoglyphSwap(**params)


def _build_wordnet(params: dict[str, Any], ctx: BuildContext, wrapper: Any) -> Any:
    return _sub().OfflineWordSwapWordNet(ctx.resources.wordnet())


def _build_embedding(params: dict[str, Any], ctx: BuildContext, wrapper: Any) -> Any:
    return _ta().transformations.WordSwapEmbedding(
        embedding=ctx.resources.word_embedding(), **params
    )


def _masked_lm_args(params: dict[str, Any], ctx: BuildContext) -> dict[str, Any]:
    model, tokenizer = ctx.resources.masked_lm(ctx.attack_name)
    args = dict(params)
    if args.get("window_size") is None:
        args["window_size"] = float("inf")
    # Inputs longer than the model's position table are an index error, not a result.
    limits = [
        getattr(tokenizer, "model_max_length", None),
        getattr(model.config, "max_position_embeddings", None),
    ]
    usable = [x for x in limits if isinstance(x, int) and 0 < x < 100_000]
    if usable:
        args["max_length"] = min(args["max_length"], *usable)
    return {"masked_language_model": model, "tokenizer": tokenizer, **args}


def _build_masked_lm(cls_name: str) -> Builder:
    def build(params: dict[str, Any], ctx: BuildContext, wrapper: Any) -> Any:
        cls = getattr(_ta().transformations, cls_name)
        return cls(**_masked_lm_args(params, ctx))

    return build


def _build_merge(params: dict[str, Any], ctx: BuildContext, wrapper: Any) -> Any:
    return _sub().SpacyMaskedLMMerge(ctx.resources.tagger(), **_masked_lm_args(params, ctx))


def _build_tagged(cls_name: str) -> Builder:
    def build(params: dict[str, Any], ctx: BuildContext, wrapper: Any) -> Any:
        return getattr(_sub(), cls_name)(ctx.resources.tagger(), **params)

    return build


def _build_stopword(params: dict[str, Any], ctx: BuildContext, wrapper: Any) -> Any:
    words = params["words"]
    if words is None:
        words = ctx.resources.stopwords(params["list"])
    return _ta().constraints.pre_transformation.StopwordModification(stopwords=set(words))


def _build_embedding_distance(params: dict[str, Any], ctx: BuildContext, wrapper: Any) -> Any:
    return _ta().constraints.semantics.WordEmbeddingDistance(
        embedding=ctx.resources.word_embedding(), cased=False, **params
    )


def _build_sentence_encoder(params: dict[str, Any], ctx: BuildContext, wrapper: Any) -> Any:
    return _sub().MiniLMSentenceEncoder(ctx.resources.encoder(), **params)


def _build_pos(params: dict[str, Any], ctx: BuildContext, wrapper: Any) -> Any:
    return _sub().SpacyPartOfSpeech(ctx.resources.tagger(), **params)


def _build_search(cls_name: str) -> Builder:
    def build(params: dict[str, Any], ctx: BuildContext, wrapper: Any) -> Any:
        return getattr(_ta().search_methods, cls_name)(**params)

    return build


# --------------------------------------------------------------------------------------------------
# Validation hooks


def _one_of(*names: str) -> Callable[[dict[str, Any]], str | None]:
    def check(params: dict[str, Any]) -> str | None:
        given = [n for n in names if params.get(n) is not None]
        if len(given) != 1:
            return f"needs exactly one of {', '.join(names)}"
        return None

    return check


def _at_least_one(*names: str) -> Callable[[dict[str, Any]], str | None]:
    def check(params: dict[str, Any]) -> str | None:
        if all(params.get(n) is None for n in names):
            return f"needs at least one of {', '.join(names)}"
        return None

    return check


def _stopword_check(params: dict[str, Any]) -> str | None:
    if params["words"] is not None and params["list"] is not None:
        return "give either 'list' or 'words', not both (set list: null to use words)"
    if params["words"] is None and params["list"] is None:
        return "needs 'list' or 'words'"
    return None


def _stopword_resources(params: dict[str, Any]) -> tuple[str, ...]:
    return (f"stopwords:{params['list']}",) if params["words"] is None else ()


# --------------------------------------------------------------------------------------------------
# The registry

_EMBEDDING_SUB = (
    "GloVe 6B 50-d (most frequent alphabetic words, unit rows, cosine neighbours) instead of "
    "counter-fitted paragram vectors"
)
_ENCODER_SUB = "all-MiniLM-L6-v2 sentence embeddings instead of the Universal Sentence Encoder"
_SPACY_POS_SUB = "spaCy en_core_web_md tags (PTB mapped to the universal tagset) instead of NLTK"
_SPACY_NER_SUB = "spaCy en_core_web_md entities instead of flair's NER model"
_MLM_PARAMS = {
    "max_candidates": Param("int", 50, minimum=1),
    "min_confidence": Param("float", 5e-4, minimum=0.0, maximum=1.0),
    "window_size": Param("int", None, nullable=True, minimum=1, doc="null: the whole text"),
    "batch_size": Param("int", 16, minimum=1),
    "max_length": Param("int", 512, minimum=8, doc="capped at the masked LM's own limit"),
}

_COMPONENTS: list[Component] = [
    # -- goals ---------------------------------------------------------------------------
    Component(
        "goal",
        "untargeted",
        "misclassify: any label other than the gold one (UntargetedClassification)",
        {"target_max_score": Param("float", None, nullable=True, minimum=0.0)},
        _goal("UntargetedClassification"),
    ),
    Component(
        "goal",
        "targeted",
        "make the model predict target_class (TargetedClassification)",
        {"target_class": Param("int", 0, minimum=0)},
        _goal("TargetedClassification"),
    ),
    # -- transformations -------------------------------------------------------------------
    Component(
        "transformation",
        "composite",
        "the union of several transformations' candidates (CompositeTransformation)",
        {"of": Param("components", [], doc="list of {type, params} transformations")},
        _build_composite,
        check=lambda p: None if p["of"] else "'of' lists no transformations",
    ),
    Component(
        "transformation",
        "neighbouring_char_swap",
        "swap two neighbouring characters (WordSwapNeighboringCharacterSwap)",
        _char_params(),
        _plain("transformations.WordSwapNeighboringCharacterSwap"),
    ),
    Component(
        "transformation",
        "random_char_substitution",
        "replace a character by a random letter (WordSwapRandomCharacterSubstitution)",
        {"random_one": Param("bool", True, doc="one random edit per word (else all edits)")},
        _plain("transformations.WordSwapRandomCharacterSubstitution"),
    ),
    Component(
        "transformation",
        "random_char_deletion",
        "delete a character (WordSwapRandomCharacterDeletion)",
        _char_params(),
        _plain("transformations.WordSwapRandomCharacterDeletion"),
    ),
    Component(
        "transformation",
        "random_char_insertion",
        "insert a random character (WordSwapRandomCharacterInsertion)",
        {
            **_char_params(),
            "letters_to_insert": Param(
                "str", None, nullable=True, doc="characters to insert (null: ASCII letters)"
            ),
        },
        _build_insertion,
    ),
    Component(
        "transformation",
        "qwerty",
        "replace a character by a neighbouring key on a QWERTY keyboard (WordSwapQWERTY)",
        _char_params(),
        _plain("transformations.WordSwapQWERTY"),
    ),
    Component(
        "transformation",
        "homoglyph",
        "replace a character by a look-alike from TextAttack's inline table (WordSwapHomoglyphSwap)",
        {"random_one": Param("bool", False)},
        _build_homoglyph,
        substitution="homoglyph swap without the intentional_homoglyphs.txt the wheel lacks",
    ),
    Component(
        "transformation",
        "wordnet",
        "WordNet 3.0 synonyms (WordSwapWordNet)",
        {},
        _build_wordnet,
        resources=lambda p: ("wordnet",),
        substitution="WordNet 3.0 from the pinned asset through a private NLTK reader",
    ),
    Component(
        "transformation",
        "embedding",
        "nearest neighbours in the word embedding (WordSwapEmbedding)",
        {"max_candidates": Param("int", 15, minimum=1, maximum=50)},
        _build_embedding,
        resources=lambda p: ("glove50",),
        substitution=_EMBEDDING_SUB,
    ),
    Component(
        "transformation",
        "masked_lm",
        "words a masked language model predicts at the word's position (WordSwapMaskedLM)",
        {"method": Param("str", "bae", choices=("bae", "bert-attack")), **_MLM_PARAMS},
        _build_masked_lm("WordSwapMaskedLM"),
        resources=lambda p: ("masked_lm",),
        needs_masked_lm=True,
    ),
    Component(
        "transformation",
        "masked_lm_insertion",
        "insert a word a masked language model predicts (WordInsertionMaskedLM)",
        dict(_MLM_PARAMS),
        _build_masked_lm("WordInsertionMaskedLM"),
        resources=lambda p: ("masked_lm",),
        needs_masked_lm=True,
    ),
    Component(
        "transformation",
        "masked_lm_merge",
        "merge two words into one a masked language model predicts (WordMergeMaskedLM)",
        dict(_MLM_PARAMS),
        _build_merge,
        resources=lambda p: ("masked_lm", "spacy_md"),
        substitution="spaCy en_core_web_md UPOS tags pick the word pairs to merge, not flair",
        needs_masked_lm=True,
    ),
    Component(
        "transformation",
        "change_name",
        "replace person names detected by NER with other names (WordSwapChangeName)",
        {
            "num_name_replacements": Param("int", 3, minimum=1),
            "first_only": Param("bool", False),
            "last_only": Param("bool", False),
            "consistent": Param("bool", False),
        },
        _build_tagged("SpacyChangeName"),
        resources=lambda p: ("spacy_md",),
        substitution=_SPACY_NER_SUB,
        check=lambda p: (
            "first_only and last_only cannot both be true"
            if p["first_only"] and p["last_only"]
            else None
        ),
    ),
    Component(
        "transformation",
        "change_location",
        "replace locations detected by NER with other places (WordSwapChangeLocation)",
        {"n": Param("int", 3, minimum=1), "consistent": Param("bool", False)},
        _build_tagged("SpacyChangeLocation"),
        resources=lambda p: ("spacy_md",),
        substitution=_SPACY_NER_SUB,
    ),
    Component(
        "transformation",
        "change_number",
        "replace numbers by nearby numbers (WordSwapChangeNumber)",
        {"max_change": Param("float", 1.0, minimum=0.0), "n": Param("int", 3, minimum=1)},
        _plain("transformations.WordSwapChangeNumber"),
    ),
    Component(
        "transformation",
        "contract",
        "contract phrases, e.g. 'is not' -> 'isn't' (WordSwapContract)",
        {},
        _plain("transformations.WordSwapContract"),
    ),
    Component(
        "transformation",
        "extend",
        "expand contractions, e.g. 'isn't' -> 'is not' (WordSwapExtend)",
        {},
        _plain("transformations.WordSwapExtend"),
    ),
    Component(
        "transformation",
        "inflections",
        "other inflections of the word's lemma (WordSwapInflections)",
        {},
        _build_tagged("SpacyInflections"),
        resources=lambda p: ("spacy_md",),
        substitution="spaCy en_core_web_md UPOS tags instead of flair's upos-fast model",
    ),
    Component(
        "transformation",
        "word_deletion",
        "delete a word (WordDeletion)",
        {},
        _plain("transformations.WordDeletion"),
    ),
    # -- constraints -------------------------------------------------------------------------
    Component(
        "constraint",
        "repeat",
        "never modify the same word twice (RepeatModification)",
        {},
        _plain("constraints.pre_transformation.RepeatModification"),
    ),
    Component(
        "constraint",
        "stopword",
        "never modify stop words (StopwordModification)",
        {
            "list": Param(
                "str",
                "english",
                nullable=True,
                choices=("english", "textfooler"),
                doc="packaged list: NLTK's English list, or TextFooler's",
            ),
            "words": Param("str_list", None, nullable=True, doc="an explicit stop-word list"),
        },
        _build_stopword,
        resources=_stopword_resources,
        check=_stopword_check,
    ),
    Component(
        "constraint",
        "max_words_perturbed",
        "cap on perturbed words, absolute and/or relative (MaxWordsPerturbed)",
        {
            "max_num_words": Param("int", None, nullable=True, minimum=0),
            "max_percent": Param("float", None, nullable=True, minimum=0.0, maximum=1.0),
        },
        _plain("constraints.overlap.MaxWordsPerturbed"),
        check=_at_least_one("max_num_words", "max_percent"),
    ),
    Component(
        "constraint",
        "max_num_words_modified",
        "cap on modified words, before transformation (MaxNumWordsModified)",
        {"max_num_words": Param("int", 1, minimum=0)},
        _plain("constraints.pre_transformation.MaxNumWordsModified"),
    ),
    Component(
        "constraint",
        "levenshtein",
        "cap on the character edit distance (LevenshteinEditDistance)",
        {
            "max_edit_distance": Param("int", 30, minimum=0),
            "compare_against_original": Param("bool", True),
        },
        _plain("constraints.overlap.LevenshteinEditDistance"),
    ),
    Component(
        "constraint",
        "max_modification_rate",
        "cap on the share of modified words (MaxModificationRate)",
        {
            "max_rate": Param("float", 0.1, minimum=0.0, maximum=1.0),
            "min_threshold": Param("int", 1, minimum=0),
        },
        _plain("constraints.pre_transformation.MaxModificationRate"),
    ),
    Component(
        "constraint",
        "min_word_length",
        "never modify words shorter than min_length (MinWordLength)",
        {"min_length": Param("int", 4, minimum=0)},
        _plain("constraints.pre_transformation.MinWordLength"),
    ),
    Component(
        "constraint",
        "word_embedding_distance",
        "substitute close to the original word in the embedding (WordEmbeddingDistance)",
        {
            "min_cos_sim": Param("float", None, nullable=True, minimum=-1.0, maximum=1.0),
            "max_mse_dist": Param(
                "float", None, nullable=True, minimum=0.0, doc="squared L2 on unit rows"
            ),
            "include_unknown_words": Param("bool", True),
            "compare_against_original": Param("bool", True),
        },
        _build_embedding_distance,
        resources=lambda p: ("glove50",),
        substitution=_EMBEDDING_SUB,
        check=_one_of("min_cos_sim", "max_mse_dist"),
    ),
    Component(
        "constraint",
        "sentence_encoder",
        "sentence-embedding similarity to the original (SentenceEncoder)",
        {
            "threshold": Param("float", 0.8),
            "metric": Param("str", "cosine", choices=("cosine", "angular", "max_euclidean")),
            "compare_against_original": Param("bool", True),
            "window_size": Param("int", None, nullable=True, minimum=1, doc="null: whole text"),
            "skip_text_shorter_than_window": Param("bool", False),
        },
        _build_sentence_encoder,
        resources=lambda p: ("minilm",),
        substitution=_ENCODER_SUB,
    ),
    Component(
        "constraint",
        "part_of_speech",
        "substitute has the original word's part of speech (PartOfSpeech)",
        {
            "allow_verb_noun_swap": Param("bool", True),
            "compare_against_original": Param("bool", True),
        },
        _build_pos,
        resources=lambda p: ("spacy_md",),
        substitution=_SPACY_POS_SUB,
    ),
    # -- search methods ----------------------------------------------------------------------
    Component(
        "search",
        "greedy",
        "best single change per step (GreedySearch)",
        {},
        _build_search("GreedySearch"),
    ),
    Component(
        "search",
        "greedy_wir",
        "greedy over words ranked by importance (GreedyWordSwapWIR)",
        {
            # "gradient" is left out: the harness's model wrapper exposes no gradients.
            "wir_method": Param(
                "str", "unk", choices=("unk", "delete", "weighted-saliency", "random")
            ),
            "unk_token": Param("str", "[UNK]"),
            "truncate_words_to": Param("int", None, nullable=True, minimum=1),
        },
        _build_search("GreedyWordSwapWIR"),
    ),
    Component(
        "search",
        "beam",
        "beam search over changes (BeamSearch)",
        {"beam_width": Param("int", 8, minimum=1)},
        _build_search("BeamSearch"),
    ),
    Component(
        "search",
        "alzantot_genetic",
        "genetic algorithm of Alzantot et al. 2018 (AlzantotGeneticAlgorithm)",
        {
            "pop_size": Param("int", 60, minimum=1),
            "max_iters": Param("int", 20, minimum=1),
            "temp": Param("float", 0.3, minimum=0.0),
            "give_up_if_no_improvement": Param("bool", False),
            "post_crossover_check": Param("bool", True),
            "max_crossover_retries": Param("int", 20, minimum=0),
        },
        _build_search("AlzantotGeneticAlgorithm"),
    ),
    Component(
        "search",
        "improved_genetic",
        "improved genetic algorithm of Wang et al. 2019 (ImprovedGeneticAlgorithm)",
        {
            "pop_size": Param("int", 60, minimum=1),
            "max_iters": Param("int", 20, minimum=1),
            "temp": Param("float", 0.3, minimum=0.0),
            "give_up_if_no_improvement": Param("bool", False),
            "post_crossover_check": Param("bool", True),
            "max_crossover_retries": Param("int", 20, minimum=0),
            "max_replace_times_per_index": Param("int", 5, minimum=1),
        },
        _build_search("ImprovedGeneticAlgorithm"),
    ),
    Component(
        "search",
        "particle_swarm",
        "discrete particle swarm optimisation of Zang et al. 2020 (ParticleSwarmOptimization)",
        {
            "pop_size": Param("int", 60, minimum=1),
            "max_iters": Param("int", 20, minimum=1),
            "post_turn_check": Param("bool", True),
            "max_turn_retries": Param("int", 20, minimum=0),
        },
        _build_search("ParticleSwarmOptimization"),
    ),
]

REGISTRY: dict[Kind, dict[str, Component]] = {kind: {} for kind in KINDS}
for _component in _COMPONENTS:
    REGISTRY[_component.kind][_component.name] = _component


def component_names(kind: Kind) -> list[str]:
    return sorted(REGISTRY[kind])


# --------------------------------------------------------------------------------------------------
# Validation


@dataclass(frozen=True)
class ResolvedComponent:
    """A registry component with every parameter set (defaults filled in, values checked)."""

    kind: Kind
    type: str
    params: dict[str, Any]
    # Nested components (a composite transformation's parts), already resolved.
    parts: tuple[ResolvedComponent, ...] = ()

    @property
    def component(self) -> Component:
        return REGISTRY[self.kind][self.type]

    def to_data(self) -> dict[str, Any]:
        params = dict(self.params)
        if self.parts:
            params["of"] = [p.to_data() for p in self.parts]
        return {"type": self.type, "params": params}

    def walk(self) -> Iterable[ResolvedComponent]:
        yield self
        for part in self.parts:
            yield from part.walk()


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def _check_value(param: Param, value: Any, where: str) -> Any:
    if value is None:
        if param.nullable:
            return None
        raise SpecError(f"{where} may not be null")
    expected = {
        "int": "an integer",
        "float": "a number",
        "bool": "true or false",
        "str": "a string",
        "str_list": "a list of strings",
        "components": "a list of {type, params}",
    }[param.type]
    if param.type == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif param.type == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif param.type == "bool":
        ok = isinstance(value, bool)
    elif param.type == "str":
        ok = isinstance(value, str)
    elif param.type == "str_list":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        ok = isinstance(value, list)
    if not ok:
        raise SpecError(f"{where} must be {expected}, got {_type_name(value)}")
    if param.choices is not None and value not in param.choices:
        allowed = ", ".join(repr(c) for c in param.choices)
        raise SpecError(f"{where} is {shown(value, 40)}; allowed: {allowed}")
    if isinstance(value, float) and value != value:
        # NaN passes every comparison below and would reach TextAttack as a threshold.
        raise SpecError(f"{where} is NaN; give a number")
    if param.minimum is not None and isinstance(value, int | float) and value < param.minimum:
        raise SpecError(f"{where} is {shown(value, 30)}; must be at least {param.minimum}")
    if param.maximum is not None and isinstance(value, int | float) and value > param.maximum:
        raise SpecError(f"{where} is {shown(value, 30)}; must be at most {param.maximum}")
    return value


def resolve_component(
    kind: Kind,
    spec: ComponentSpec | Mapping[str, Any],
    attack_name: str,
    _memo: dict[tuple[str, int], ResolvedComponent] | None = None,
) -> ResolvedComponent:
    """Look ``spec`` up in the registry and check its parameters; SpecError naming the key.

    Each node is resolved once: YAML aliases let one composite transformation appear many times
    (``of: [*a, *a, *a]`` at every level), and resolving every appearance again multiplied the
    work by the fan-out at each level.
    """
    memo: dict[tuple[str, int], ResolvedComponent] = {} if _memo is None else _memo
    memo_key = (kind, id(spec))
    if memo_key in memo:
        return memo[memo_key]
    if isinstance(spec, ComponentSpec):
        name, given = spec.type, dict(spec.params)
    elif isinstance(spec, Mapping):
        extra = sorted((str(k) for k in spec if k not in ("type", "params")), key=str)
        if "type" not in spec or not isinstance(spec["type"], str) or extra:
            detail = f"has unknown key {shown(extra[0], 30)}" if extra else "needs a 'type'"
            raise SpecError(f"attack {attack_name!r}: a {kind} part {detail}")
        name = spec["type"]
        raw = spec.get("params") or {}
        if not isinstance(raw, Mapping):
            raise SpecError(
                f"attack {attack_name!r}: {kind} {shown(name, 40)}: params must be a mapping"
            )
        given = dict(raw)
    else:
        raise SpecError(f"attack {attack_name!r}: a {kind} must be a mapping with a 'type'")
    component = REGISTRY[kind].get(name)
    if component is None:
        hint = did_you_mean(name, component_names(kind))
        known = listing(component_names(kind), 6, 24)
        raise SpecError(
            f"attack {attack_name!r}: unknown {kind} {shown(name, 40)} ({hint}known: {known}; "
            "see docs/attacks.md)"
        )
    unknown = sorted((k for k in given if k not in component.params), key=str)
    if unknown:
        allowed = listing(sorted(component.params), 10, 24) or "none"
        raise SpecError(
            f"attack {attack_name!r}: {kind} {name!r} has no parameter {shown(unknown[0], 30)} "
            f"(allowed: {allowed})"
        )
    params: dict[str, Any] = {}
    parts: tuple[ResolvedComponent, ...] = ()
    checked: dict[str, Any] = {}
    for key, param in component.params.items():
        where = f"attack {attack_name!r}: {kind} {name!r} parameter {key!r}"
        value = _check_value(param, given.get(key, param.default), where)
        if param.type == "components":
            parts = tuple(resolve_component("transformation", p, attack_name, memo) for p in value)
            checked[key] = parts
            continue
        params[key] = list(value) if isinstance(value, list) else value
        checked[key] = params[key]
    problem = component.check(checked)
    if problem:
        raise SpecError(f"attack {attack_name!r}: {kind} {name!r}: {problem}")
    resolved = ResolvedComponent(kind, name, params, parts)
    memo[memo_key] = resolved
    return resolved


@dataclass(frozen=True)
class ResolvedComposition:
    goal: ResolvedComponent
    transformation: ResolvedComponent
    constraints: tuple[ResolvedComponent, ...]
    search: ResolvedComponent

    def components(self) -> Iterable[ResolvedComponent]:
        yield self.goal
        yield from self.transformation.walk()
        for c in self.constraints:
            yield from c.walk()
        yield self.search

    def to_data(self) -> dict[str, Any]:
        return {
            "goal": self.goal.to_data(),
            "transformation": self.transformation.to_data(),
            "constraints": [c.to_data() for c in self.constraints],
            "search": self.search.to_data(),
        }

    @property
    def needs_masked_lm(self) -> bool:
        return any(c.component.needs_masked_lm for c in self.components())

    def resource_names(self) -> list[str]:
        names: set[str] = set()
        for c in self.components():
            names.update(c.component.resources(c.params))
        return sorted(names)

    def substitutions(self) -> list[str]:
        found: dict[str, None] = {}
        for c in self.components():
            if c.component.substitution:
                found[c.component.substitution] = None
        return list(found)


def resolve_composition(composition: CompositionSpec, attack_name: str) -> ResolvedComposition:
    """Validate a whole composition against the registry (nothing is built)."""
    # One memo for the whole composition: a node shared by several parts is resolved once.
    memo: dict[tuple[str, int], ResolvedComponent] = {}
    return ResolvedComposition(
        goal=resolve_component("goal", composition.goal, attack_name, memo),
        transformation=resolve_component(
            "transformation", composition.transformation, attack_name, memo
        ),
        constraints=tuple(
            resolve_component("constraint", c, attack_name, memo) for c in composition.constraints
        ),
        search=resolve_component("search", composition.search, attack_name, memo),
    )


# --------------------------------------------------------------------------------------------------
# Building


def _build_component(
    kind: Kind,
    spec: ResolvedComponent | ComponentSpec | Mapping[str, Any],
    ctx: BuildContext,
    wrapper: Any,
) -> Any:
    resolved = (
        spec
        if isinstance(spec, ResolvedComponent)
        else resolve_component(kind, spec, ctx.attack_name)
    )
    params = dict(resolved.params)
    if resolved.parts:
        params["of"] = list(resolved.parts)
    return resolved.component.build(params, ctx, wrapper)


def build_attack(composition: CompositionSpec, model_wrapper: Any, ctx: BuildContext) -> Any:
    """A ``textattack.Attack`` for ``composition`` against ``model_wrapper``.

    Several input columns: the columns outside ``ctx.attack_columns`` are frozen with an
    ``InputColumnModification`` (the premise of an NLI pair, by default). Heavy resources come
    from ``ctx.resources`` and are shared by every attack built with it.
    """
    from bench.attacks.compat import nltk_downloads_blocked

    resolved = resolve_composition(composition, ctx.attack_name)
    columns = ctx.modifiable_columns()
    ta = _ta()
    with nltk_downloads_blocked():
        goal = _build_component("goal", resolved.goal, ctx, model_wrapper)
        transformation = _build_component("transformation", resolved.transformation, ctx, None)
        constraints = [_build_component("constraint", c, ctx, None) for c in resolved.constraints]
        frozen = [c for c in ctx.input_columns if c not in columns]
        if len(ctx.input_columns) > 1 and frozen:
            constraints.append(
                ta.constraints.pre_transformation.InputColumnModification(
                    list(ctx.input_columns), set(frozen)
                )
            )
        search = _build_component("search", resolved.search, ctx, None)
        try:
            return ta.Attack(goal, constraints, transformation, search)
        except ValueError as exc:
            raise SpecError(
                f"attack {ctx.attack_name!r}: search {resolved.search.type!r} cannot use "
                f"transformation {resolved.transformation.type!r} ({exc})"
            ) from exc


# --------------------------------------------------------------------------------------------------
# Profiles


def attack_profile(resolved_attack: ResolvedAttack, ctx: BuildContext) -> dict[str, Any]:
    """Canonical data that says exactly what an attack is (its hash is the attack's identity).

    Holds the recipe and variant names (not the attack's own name), deviations from the
    published recipe, the composition with every parameter filled in, the substitutions in
    effect, the hashes and settings of the resources actually used, the TextAttack version and
    the attacked columns.
    """
    from bench.attacks.compat import textattack_version

    composition = resolve_composition(resolved_attack.composition, resolved_attack.name)
    names = composition.resource_names()
    published = resolved_attack.published
    return {
        # The attack's name in its suite is a label, not part of what the attack is: equal
        # attacks under different names share a profile (and so stored results).
        "format": PROFILE_FORMAT,
        "recipe": resolved_attack.recipe,
        "variant": resolved_attack.variant,
        "published": None if published is None else published.to_data(),
        "deviations": list(resolved_attack.deviations),
        "recipe_params": dict(resolved_attack.params),
        "composition": composition.to_data(),
        "substitutions": composition.substitutions(),
        "resources": ctx.resources.resource_hashes(names),
        "resource_settings": ctx.resources.resource_settings(names),
        "textattack": textattack_version(),
        "input_columns": list(ctx.input_columns),
        "attack_columns": ctx.modifiable_columns(),
    }


def profile_hash(profile: Mapping[str, Any]) -> str:
    """First 12 hex digits of the SHA-256 of the profile's canonical JSON."""
    return sha256_text(canonical_json(dict(profile)))[:12]


__all__ = [
    "KINDS",
    "REGISTRY",
    "BuildContext",
    "Component",
    "Param",
    "ResolvedComponent",
    "ResolvedComposition",
    "attack_profile",
    "build_attack",
    "component_names",
    "profile_hash",
    "resolve_component",
    "resolve_composition",
]

"""Attack components as data: registry validation, recipes, profiles, suites; and the offline
resources behind them (repaired WordNet, GloVe neighbours, MiniLM encoder, spaCy tags).

The registry, recipe and suite tests need no assets. Tests marked ``slow`` read the pinned assets
(fetched into the shared cache on first use).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.attacks.components import (
    BuildContext,
    attack_profile,
    profile_hash,
    resolve_component,
    resolve_composition,
)
from bench.attacks.recipes import RECIPES, resolve
from bench.attacks.resources import AttackResources
from bench.attacks.specs import AttackSpec, ComponentSpec, CompositionSpec
from bench.attacks.suites import list_suites, load_suite
from bench.errors import SpecError


def ctx_for(columns: list[str], resources: AttackResources | None = None) -> BuildContext:
    return BuildContext(
        resources=resources or AttackResources(),
        input_columns=columns,
        attack_columns=None,
        query_budget=None,
        model_batch_size=32,
        attack_name="a",
    )


def composition(**overrides: object) -> CompositionSpec:
    data: dict[str, object] = {
        "transformation": {"type": "embedding", "params": {"max_candidates": 10}},
        "constraints": [{"type": "repeat"}, {"type": "stopword"}],
        "search": {"type": "greedy_wir", "params": {"wir_method": "delete"}},
    }
    data.update(overrides)
    return CompositionSpec.model_validate(data)


# --------------------------------------------------------------------------------------------------
# Registry


def test_unknown_component_is_a_spec_error_naming_it() -> None:
    comp = composition(transformation={"type": "wordnett"})
    with pytest.raises(SpecError, match=r"attack 'custom-1'.*unknown transformation 'wordnett'"):
        resolve(AttackSpec(name="custom-1", composition=comp))


def test_unknown_parameter_is_a_spec_error_naming_it() -> None:
    comp = composition(constraints=[{"type": "levenshtein", "params": {"max_edits": 3}}])
    with pytest.raises(SpecError) as info:
        resolve(AttackSpec(name="x", composition=comp))
    message = str(info.value)
    assert "'x'" in message and "'levenshtein'" in message and "'max_edits'" in message
    assert "max_edit_distance" in message  # the allowed ones are listed
    assert "\n" not in message


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"type": "levenshtein", "params": {"max_edit_distance": "3"}}, "must be an integer"),
        ({"type": "levenshtein", "params": {"max_edit_distance": True}}, "must be an integer"),
        ({"type": "sentence_encoder", "params": {"metric": "dot"}}, "allowed: 'cosine'"),
        ({"type": "max_words_perturbed"}, "needs at least one of"),
        ({"type": "word_embedding_distance"}, "needs exactly one of"),
        ({"type": "stopword", "params": {"words": ["a"]}}, "either 'list' or 'words'"),
        ({"type": "max_modification_rate", "params": {"max_rate": 1.5}}, "at most 1.0"),
    ],
)
def test_bad_parameter_values_are_refused(spec: dict[str, object], fragment: str) -> None:
    with pytest.raises(SpecError, match=fragment):
        resolve_component("constraint", spec, "a")


def test_nested_composite_parts_are_validated() -> None:
    spec = {"type": "composite", "params": {"of": [{"type": "qwerty", "params": {"x": 1}}]}}
    with pytest.raises(SpecError, match=r"transformation 'qwerty' has no parameter 'x'"):
        resolve_component("transformation", spec, "a")
    with pytest.raises(SpecError, match="lists no transformations"):
        resolve_component("transformation", {"type": "composite"}, "a")


def test_defaults_are_filled_so_equal_attacks_hash_equal() -> None:
    bare = resolve_component("transformation", ComponentSpec(type="embedding"), "a")
    explicit = resolve_component(
        "transformation", ComponentSpec(type="embedding", params={"max_candidates": 15}), "a"
    )
    assert bare == explicit
    assert bare.params == {"max_candidates": 15}


def test_floats_accept_integers() -> None:
    c = resolve_component(
        "constraint", {"type": "sentence_encoder", "params": {"threshold": 1}}, "a"
    )
    assert c.params["threshold"] == 1.0 and isinstance(c.params["threshold"], float)


def test_attack_columns_must_exist() -> None:
    ctx = ctx_for(["premise", "hypothesis"])
    assert ctx.modifiable_columns() == ["hypothesis"]
    ctx.attack_columns = {"premise", "hypothesis"}
    assert ctx.modifiable_columns() == ["premise", "hypothesis"]
    ctx.attack_columns = {"claim"}
    with pytest.raises(SpecError, match="claim"):
        ctx.modifiable_columns()


# --------------------------------------------------------------------------------------------------
# Recipes


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_resolves(name: str) -> None:
    resolved = resolve(AttackSpec(name=name, recipe=name))
    assert resolved.recipe == name
    assert resolved.published is not None and resolved.published.recipe_class
    comp = resolve_composition(resolved.composition, name)
    assert comp.needs_masked_lm == resolved.needs_masked_lm
    if resolved.variant is None:
        assert resolved.deviations == ()
        assert resolved.display_name == name
    else:
        assert resolved.deviations, name
        assert resolved.display_name == resolved.variant != name


def test_substituted_recipes_carry_variant_names() -> None:
    variants = {n: resolve(AttackSpec(name=n, recipe=n)).variant for n in RECIPES}
    for faithful in ("deepwordbug", "pruthi", "pwws"):
        assert variants[faithful] is None
    assert variants["textfooler"] == "textfooler-glove-minilm"
    assert variants["textbugger"] == "textbugger-glove-minilm"
    assert variants["checklist"] == "checklist-spacy-ner"
    assert variants["pso"] == "pso-wordnet"
    assert variants["faster-genetic"] == "faster-genetic-glove-nolm"
    assert variants["alzantot"] == "alzantot-glove-nolm"
    for name in ("bae", "bert-attack", "clare"):
        assert variants[name] == f"{name}-minilm"
        assert RECIPES[name].needs_masked_lm
    textfooler = resolve(AttackSpec(name="t", recipe="textfooler"))
    assert any("recalibrated" in d for d in textfooler.deviations)


def test_recipe_reproduces_the_stock_composition() -> None:
    # TextFoolerJin2019 in TextAttack 0.3.11, component by component, in its constraint order.
    resolved = resolve(AttackSpec(name="t", recipe="textfooler"))
    data = resolve_composition(resolved.composition, "t").to_data()
    assert data["transformation"] == {"type": "embedding", "params": {"max_candidates": 50}}
    assert [c["type"] for c in data["constraints"]] == [
        "repeat",
        "stopword",
        "word_embedding_distance",
        "part_of_speech",
        "sentence_encoder",
    ]
    encoder = data["constraints"][-1]["params"]
    assert encoder == {
        "threshold": 0.840845057,
        "metric": "angular",
        "compare_against_original": False,
        "window_size": 15,
        "skip_text_shorter_than_window": True,
    }
    assert data["search"] == {
        "type": "greedy_wir",
        "params": {"wir_method": "delete", "unk_token": "[UNK]", "truncate_words_to": None},
    }


def test_unknown_recipe_and_override_are_spec_errors() -> None:
    with pytest.raises(SpecError, match=r"unknown attack recipe 'textfoolr' \(known: .*textfooler"):
        resolve(AttackSpec(name="t", recipe="textfoolr"))
    with pytest.raises(SpecError, match=r"recipe 'pruthi' has no parameter 'pop_size'"):
        resolve(AttackSpec(name="t", recipe="pruthi", params={"pop_size": 3}))
    with pytest.raises(SpecError, match="max_num_word_swaps"):
        resolve(AttackSpec(name="t", recipe="pruthi", params={"max_num_word_swaps": "two"}))


def test_overrides_mark_the_variant_and_list_the_change() -> None:
    same = resolve(AttackSpec(name="p", recipe="pruthi", params={"max_num_word_swaps": 1}))
    assert same.variant is None
    changed = resolve(AttackSpec(name="p", recipe="pruthi", params={"max_num_word_swaps": 2}))
    assert changed.variant == "pruthi-modified"
    assert "max_num_word_swaps=2 (recipe: 1)" in changed.deviations[-1]
    pso = resolve(AttackSpec(name="p", recipe="pso", params={"pop_size": 20}))
    assert pso.display_name == "pso-wordnet-modified"


# --------------------------------------------------------------------------------------------------
# Profiles


def test_profile_hash_is_stable_and_follows_parameters() -> None:
    ctx = ctx_for(["premise", "hypothesis"])
    base = resolve(AttackSpec(name="tf", recipe="textfooler"))
    first = attack_profile(base, ctx)
    again = attack_profile(resolve(AttackSpec(name="tf", recipe="textfooler")), ctx)
    assert profile_hash(first) == profile_hash(again)
    assert len(profile_hash(first)) == 12
    assert first["variant"] == "textfooler-glove-minilm"
    assert set(first["resources"]) == {
        "glove50",
        "minilm",
        "spacy_md",
        "stopwords:textfooler",
    }
    assert all(len(h) == 64 for h in first["resources"].values())
    assert first["attack_columns"] == ["hypothesis"]
    assert first["textattack"] == "0.3.11"
    assert first["substitutions"]

    tweaked = resolve(AttackSpec(name="tf", recipe="textfooler", params={"min_cos_sim": 0.8}))
    assert profile_hash(attack_profile(tweaked, ctx)) != profile_hash(first)
    ctx.attack_columns = {"premise", "hypothesis"}
    assert profile_hash(attack_profile(base, ctx)) != profile_hash(first)


def test_profile_of_a_custom_composition_lists_only_used_resources() -> None:
    comp = composition(
        transformation={"type": "qwerty"},
        constraints=[
            {"type": "repeat"},
            {"type": "stopword", "params": {"list": None, "words": ["a"]}},
        ],
    )
    resolved = resolve(AttackSpec(name="typos", composition=comp))
    profile = attack_profile(resolved, ctx_for(["text"]))
    assert profile["recipe"] is None and profile["variant"] is None
    renamed = attack_profile(resolve(AttackSpec(name="other", composition=comp)), ctx_for(["text"]))
    assert profile_hash(renamed) == profile_hash(profile)  # names are labels
    assert profile["resources"] == {}
    assert profile["deviations"] == ["custom composition: not a published recipe"]


def test_masked_lm_without_a_path_is_refused_with_a_clear_message() -> None:
    with pytest.raises(SpecError) as info:
        AttackResources(masked_lm=None).masked_lm("bae")
    message = str(info.value)
    assert message.startswith("attack 'bae' needs a masked language model; pass --masked-lm PATH")
    assert "\n" not in message


# --------------------------------------------------------------------------------------------------
# Suites


def test_builtin_suites_load_and_resolve() -> None:
    assert {"quick", "full"} <= set(list_suites())
    quick = load_suite("quick")
    full = load_suite("full")
    assert [a.name for a in quick.attacks] == ["deepwordbug", "pruthi", "textbugger-char"]
    quick_names = {a.name for a in quick.attacks}
    assert quick_names < {a.name for a in full.attacks}
    displays = {resolve(a).display_name for a in full.attacks}
    assert {"pwws", "textfooler-glove-minilm", "checklist-spacy-ner"} <= displays
    assert not any(resolve(a).needs_masked_lm for a in full.attacks)


def test_suite_by_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(
        "name: mine\nattacks:\n  - name: typos\n    composition:\n"
        "      transformation: {type: qwerty}\n      search: {type: greedy}\n"
    )
    suite = load_suite(str(path))
    assert suite.name == "mine" and suite.attacks[0].composition is not None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("name: s\nattacks: [\n", "malformed YAML"),
        ("- just\n- a list\n", "a suite must be a mapping"),
        ("name: s\nattacks: []\n", "lists no attacks"),
        ("name: s\nattacks:\n  - {name: a, recipe: nope}\n", "unknown attack recipe 'nope'"),
        ("name: s\nattacks:\n  - {name: a}\n", "needs exactly one of 'recipe' or 'composition'"),
        ("name: s\nbogus: 1\nattacks:\n  - {name: a, recipe: pwws}\n", "field 'bogus'"),
    ],
)
def test_malformed_suite_is_a_one_line_spec_error(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_suite(path)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_suite_lists_the_known_ones() -> None:
    with pytest.raises(SpecError, match=r"unknown attack suite 'quik' \(known: full, quick"):
        load_suite("quik")


# --------------------------------------------------------------------------------------------------
# Offline resources on the real assets


@pytest.fixture(scope="module")
def resources() -> AttackResources:
    from bench import assets

    assets.fetch(["wordnet", "glove50", "minilm", "spacy_md"], progress=False)
    return AttackResources()


@pytest.mark.slow
def test_repaired_wordnet(resources: AttackResources) -> None:
    from bench.assets import asset_dir

    wn = resources.wordnet()
    assert "dog.n.01" in {s.name() for s in wn.synsets("dog")}
    assert "domestic_dog" in wn.synset("dog.n.01").lemma_names()
    assert all(wn.synsets(w) for w in ("good", "run", "quickly", "zebra", "violin"))
    # data.noun is stored split in two; synsets at and after the join must resolve.
    split_at = (asset_dir("wordnet") / "data.noun1").stat().st_size
    first_of_second_half = wn.synset_from_pos_and_offset("n", split_at + 1)
    assert first_of_second_half.name() == "zucchini.n.02"
    deep = wn.synset("zucchini.n.01")
    assert deep.offset() > split_at and "squash" in deep.definition()
    assert wn.synsets("violin")[0].offset() < split_at < wn.synsets("yogurt")[0].offset()
    assert wn.synsets("zinnia")[0].lemma_names() == ["zinnia", "old_maid", "old_maid_flower"]
    # The *.exc files are empty: regular morphology still works.
    assert wn.morphy("dogs") == "dog"


@pytest.mark.slow
def test_wordnet_swap_needs_no_download(resources: AttackResources) -> None:
    import nltk

    from bench.attacks import substitutes

    calls: list[object] = []
    original = nltk.download

    def record(*args: object, **kwargs: object) -> bool:
        calls.append(args)
        return False

    nltk.download = record
    try:
        swap = substitutes.OfflineWordSwapWordNet(resources.wordnet())
        words = swap._get_replacement_words("good")
    finally:
        nltk.download = original
    assert calls == []
    assert {"well", "beneficial"} <= set(words)
    assert all("_" not in w and w != "good" for w in words)
    assert words == sorted(words)  # deterministic order


@pytest.mark.slow
def test_minilm_encoder_matches_a_direct_computation(resources: AttackResources) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from bench.assets import asset_dir

    sentences = ["A short one.", "A rather longer sentence, so the batch needs padding here.", "x"]
    encoder = resources.encoder()
    got = encoder.encode(sentences)
    folder = asset_dir("minilm")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    for row, text in zip(got, sentences, strict=True):
        # One sentence at a time (no padding), pooled and normalised by hand.
        ids = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**ids).last_hidden_state[0].numpy()
        mean = hidden.mean(axis=0)
        expected = mean / np.linalg.norm(mean)
        np.testing.assert_allclose(row, expected, atol=2e-5)
    hits = encoder.stats["cache_hits"]
    np.testing.assert_array_equal(encoder.encode(sentences[::-1]), got[::-1])
    assert encoder.stats["cache_hits"] == hits + 3


@pytest.mark.slow
def test_glove_embedding_neighbours(resources: AttackResources) -> None:
    emb = resources.word_embedding()
    good = [emb.index2word(i) for i in emb.nearest_neighbours(emb.word2index("good"), 5)]
    assert good[0] == "better"
    # GloVe neighbours are related words, antonyms included (the reason for the variant name).
    assert "good" in [emb.index2word(i) for i in emb.nearest_neighbours("bad", 50)]
    terrible = [emb.index2word(i) for i in emb.nearest_neighbours("terrible", 5)]
    assert {"horrible", "awful"} <= set(terrible)
    assert "film" in [emb.index2word(i) for i in emb.nearest_neighbours("movie", 3)]
    # Unit rows: cosine and TextAttack's "mse" (squared distance) agree.
    cos = emb.get_cos_sim("good", "bad")
    assert emb.get_mse_dist("good", "bad") == pytest.approx(2 - 2 * cos, abs=1e-5)
    assert emb.get_cos_sim("good", "good") == pytest.approx(1.0, abs=1e-6)
    data = resources.glove()
    assert len(data.words) == resources.vocab_size
    assert all(w.isalpha() and w.islower() for w in data.words[:1000])
    assert (data.nn[:, 0] == np.arange(len(data.words))).all()


@pytest.mark.slow
def test_glove_neighbour_cache_is_reused(tmp_path: Path) -> None:
    from bench.attacks.resources import load_glove, nearest_neighbours

    first = load_glove(tmp_path, vocab_size=3000, nn_k=10)
    assert not first.from_cache
    assert len(list(tmp_path.glob("glove50-*-n3000-k10-*.npy"))) == 1
    second = load_glove(tmp_path, vocab_size=3000, nn_k=10)
    assert second.from_cache
    np.testing.assert_array_equal(first.nn, second.nn)
    # Chunking does not change the answer.
    np.testing.assert_array_equal(nearest_neighbours(first.matrix, 10, chunk=257), first.nn)
    assert not load_glove(tmp_path, vocab_size=3000, nn_k=12).from_cache  # other k: own file


@pytest.mark.slow
def test_spacy_tags_map_to_nltk_universal_tags(resources: AttackResources) -> None:
    tagger = resources.tagger()
    words = ["John", "has", "been", "running", "quickly", "to", "the", "old", "park", "."]
    tags = tagger.universal_tags(words)
    # Proper nouns are NOUN and auxiliaries VERB, as in NLTK. spaCy tags a preposition "to" IN
    # (ADP) where NLTK's tagger says TO (PRT); the infinitival "to" is TO (PRT) in both.
    assert tags == ["NOUN", "VERB", "VERB", "VERB", "ADV", "ADP", "DET", "ADJ", "NOUN", "."]
    assert tagger.universal_tags(["She", "wants", "to", "leave"])[2] == "PRT"
    entities = [e.value for e in tagger.entities(["John", "Smith", "moved", "to", "New", "York"])]
    assert entities == ["B-PER", "E-PER", "O", "O", "B-LOC", "E-LOC"]


@pytest.mark.slow
def test_homoglyph_swap_without_the_missing_file(resources: AttackResources) -> None:
    from bench.attacks import substitutes

    swap = substitutes.OfflineHomoglyphSwap()
    candidates = swap._get_replacement_words("movie")
    assert len(candidates) == 5 and all(c != "movie" and len(c) == 5 for c in candidates)


def test_a_shared_composite_is_resolved_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """YAML aliases share one composite at every level; resolving each appearance again made
    the work grow with the fan-out to the power of the depth (5461 calls here, not 28)."""
    import time

    from bench.attacks import components
    from bench.attacks.specs import CompositionSpec

    node: dict[str, object] = {"type": "qwerty"}
    for _ in range(6):
        node = {"type": "composite", "params": {"of": [node] * 4}}
    calls = 0
    real = components.resolve_component

    def counting(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(components, "resolve_component", counting)
    composition = CompositionSpec.model_validate(
        {"transformation": node, "search": {"type": "greedy"}}
    )
    started = time.perf_counter()
    resolved = components.resolve_composition(composition, "shared")
    assert time.perf_counter() - started < 1
    assert calls <= 6 * 4 + 4  # one call per reference, each node's parts resolved once
    assert resolved.transformation.parts[0] is resolved.transformation.parts[3]


def test_component_errors_are_short_and_suggest(tmp_path: Path) -> None:
    from bench.attacks.suites import load_suite

    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: s\nattacks:\n  - name: a\n    composition:\n"
        "      transformation: {type: qwerrty}\n      search: {type: greedy}\n"
    )
    with pytest.raises(SpecError) as info:
        load_suite(suite)
    message = str(info.value)
    assert message.startswith(str(suite)) and "did you mean 'qwerty'" in message
    assert len(message) < 290
    import yaml

    huge = {"type": "qwerty", "x" * 10_000: 1}
    composite = {"type": "composite", "params": {"of": [huge]}}
    attack = {
        "name": "a",
        "composition": {"transformation": composite, "search": {"type": "greedy"}},
    }
    suite.write_text(yaml.safe_dump({"name": "s", "attacks": [attack]}))
    with pytest.raises(SpecError, match="unknown key") as info:
        load_suite(suite)
    assert len(str(info.value)) < 290


def test_nan_parameter_is_refused() -> None:
    with pytest.raises(SpecError, match="is NaN"):
        resolve(AttackSpec(name="a", recipe="textfooler", params={"use_threshold": float("nan")}))

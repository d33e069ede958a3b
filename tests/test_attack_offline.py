"""Every built-in attack builds and runs with the network blocked, against real classifiers.

Sockets are patched to refuse and record every connection attempt (name lookups included); a
test fails if anything tried. Attacks run on one sentiment sentence and one NLI pair each, with a
small query budget, so the whole file stays well under a minute once the assets are cached.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.attacks.components import BuildContext, attack_profile, build_attack, profile_hash
from bench.attacks.recipes import resolve
from bench.attacks.resources import AttackResources
from bench.attacks.specs import AttackSpec
from bench.attacks.suites import load_suite
from bench.errors import SpecError

pytestmark = pytest.mark.slow

SENTIMENT = "A wonderful, moving film about John Smith in Paris that I loved from start to finish."
NLI = OrderedDict(
    premise="Sarah believes that the old dog was sleeping in the park near London.",
    hypothesis="The old dog was sleeping in the park near London.",
)
BUDGET = 60


class NetworkAttempts:
    """Patches the socket module so that any network use is refused and recorded."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.attempts: list[str] = []
        connect = socket.socket.connect
        connect_ex = socket.socket.connect_ex

        def refuse(what: str) -> OSError:
            self.attempts.append(what)
            return OSError(f"network blocked by the test: {what}")

        def guarded_connect(sock: socket.socket, address: Any) -> Any:
            if sock.family == getattr(socket, "AF_UNIX", None):  # local IPC is not network
                return connect(sock, address)
            raise refuse(f"connect {address!r}")

        def guarded_connect_ex(sock: socket.socket, address: Any) -> Any:
            if sock.family == getattr(socket, "AF_UNIX", None):
                return connect_ex(sock, address)
            raise refuse(f"connect_ex {address!r}")

        def guarded_create_connection(address: Any, *args: Any, **kwargs: Any) -> Any:
            raise refuse(f"create_connection {address!r}")

        def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            raise refuse(f"getaddrinfo {host!r}")

        monkeypatch.setattr(socket.socket, "connect", guarded_connect)
        monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
        monkeypatch.setattr(socket, "create_connection", guarded_create_connection)
        monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[NetworkAttempts]:
    guard = NetworkAttempts(monkeypatch)
    yield guard
    assert guard.attempts == [], f"network attempts: {guard.attempts}"


@pytest.fixture(scope="module")
def assets_ready() -> None:
    from bench import assets

    assets.fetch(["wordnet", "glove50", "minilm", "spacy_md"], progress=False)


def make_wrapper(classifier: Any) -> Any:
    """A TextAttack model wrapper over ``HFClassifier.classify`` (TextAttack passes a str for one
    input column and a tuple for a pair)."""
    from bench.attacks.compat import load_textattack

    ta = load_textattack()

    class Wrapper(ta.models.wrappers.ModelWrapper):  # type: ignore[name-defined]
        def __init__(self) -> None:
            self.model = classifier.model

        def __call__(self, inputs: list[Any]) -> np.ndarray:
            texts = [t if isinstance(t, tuple) else (t,) for t in inputs]
            return classifier.classify(texts, batch_size=64)

    return Wrapper()


def predicted(classifier: Any, inputs: tuple[str, ...]) -> int:
    # The gold label is the model's own prediction, so no example is skipped as misclassified.
    return int(np.argmax(classifier.classify([inputs])[0]))


@pytest.fixture(scope="module")
def classifiers(default_models: dict[str, Path], minilm_2way: Path) -> Iterator[dict[str, Any]]:
    import torch

    from bench.models.classifier import HFClassifier

    # Where the NLI model's training data cannot be fetched, the MiniLM encoder with a seeded
    # 2-way head stands in: what is tested is that every attack runs offline on a pair.
    paths = {"minilm-nli": minilm_2way, **default_models}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield {
        name: HFClassifier.load(str(path), device="cpu", max_length=64)
        for name, path in paths.items()
    }
    torch.set_num_threads(threads)


def test_every_builtin_attack_runs_offline(
    assets_ready: None, classifiers: dict[str, Any], no_network: NetworkAttempts
) -> None:
    from bench.attacks.compat import load_textattack

    ta = load_textattack()
    resources = AttackResources()
    examples = [
        (classifiers["minilm-sentiment"], ["text"], SENTIMENT, (SENTIMENT,)),
        (classifiers["minilm-nli"], list(NLI), NLI, tuple(NLI.values())),
    ]
    attacks = {a.name: a for suite in ("quick", "full") for a in load_suite(suite).attacks}
    outcomes: dict[tuple[str, str], str] = {}
    for name, spec in attacks.items():
        resolved = resolve(spec)
        for classifier, columns, text, inputs in examples:
            ctx = BuildContext(
                resources=resources,
                input_columns=columns,
                attack_columns=None,
                query_budget=BUDGET,
                model_batch_size=64,
                attack_name=name,
            )
            attack = build_attack(resolved.composition, make_wrapper(classifier), ctx)
            assert len(profile_hash(attack_profile(resolved, ctx))) == 12
            result = attack.attack(ta.shared.AttackedText(text), predicted(classifier, inputs))
            assert not isinstance(result, ta.attack_results.SkippedAttackResult)
            assert result.perturbed_result.num_queries <= BUDGET
            if len(columns) > 1:  # the premise is frozen
                perturbed = result.perturbed_result.attacked_text
                assert perturbed._text_input["premise"] == NLI["premise"]
            outcomes[(name, columns[0])] = type(result).__name__
    assert len(outcomes) == 2 * len(attacks)
    # Not vacuous: some attacks do change a prediction within the budget.
    assert "SuccessfulAttackResult" in outcomes.values(), outcomes


def test_masked_lm_attack_needs_a_masked_lm(assets_ready: None, tiny_model_dir: Path) -> None:
    from bench.models.classifier import HFClassifier

    resolved = resolve(AttackSpec(name="bae", recipe="bae"))
    assert resolved.needs_masked_lm
    ctx = BuildContext(resources=AttackResources(masked_lm=None), input_columns=["text"])
    ctx.attack_name = "bae"
    wrapper = make_wrapper(HFClassifier.load(str(tiny_model_dir), device="cpu"))
    with pytest.raises(SpecError, match=r"attack 'bae' needs a masked language model; pass --"):
        build_attack(resolved.composition, wrapper, ctx)


@pytest.fixture(scope="module")
def tiny_masked_lm(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny BertForMaskedLM with the fixture tokenizer, saved as safetensors."""
    import shutil

    import torch
    from transformers import BertConfig, BertForMaskedLM

    folder = tmp_path_factory.mktemp("mlm") / "tiny-mlm"
    folder.mkdir()
    for item in tiny_model_dir.iterdir():
        if item.name not in {"config.json", "model.safetensors"}:
            shutil.copy(item, folder / item.name)
    vocab = (tiny_model_dir / "vocab.txt").read_text().split()
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,
    )
    BertForMaskedLM(config).save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.mark.parametrize("recipe", ["bae", "bert-attack", "clare"])
def test_masked_lm_recipes_run_with_a_local_masked_lm(
    recipe: str,
    assets_ready: None,
    tiny_model_dir: Path,
    tiny_masked_lm: Path,
    no_network: NetworkAttempts,
) -> None:
    from bench.attacks.compat import load_textattack
    from bench.models.classifier import HFClassifier

    ta = load_textattack()
    classifier = HFClassifier.load(str(tiny_model_dir), device="cpu")
    resources = AttackResources(masked_lm=str(tiny_masked_lm))
    resolved = resolve(AttackSpec(name=recipe, recipe=recipe))
    ctx = BuildContext(
        resources=resources, input_columns=["text"], query_budget=40, attack_name=recipe
    )
    profile = attack_profile(resolved, ctx)
    assert len(profile["resources"]["masked_lm"]) == 64
    attack = build_attack(resolved.composition, make_wrapper(classifier), ctx)
    text = "the movie was really good but the food in the hotel was awful and the room sad"
    result = attack.attack(ta.shared.AttackedText(text), predicted(classifier, (text,)))
    assert not isinstance(result, ta.attack_results.SkippedAttackResult)
    assert result.perturbed_result.num_queries > 1  # the masked LM proposed candidates


def test_masked_lm_folder_is_checked(tmp_path: Path, tiny_model_dir: Path) -> None:
    from bench.errors import ModelError

    with pytest.raises(ModelError, match="does not exist"):
        AttackResources(masked_lm=str(tmp_path / "nope")).masked_lm("bae")
    # A classifier folder has no masked-LM head: refused instead of running with a random one.
    with pytest.raises(ModelError, match="is not a masked language model"):
        AttackResources(masked_lm=str(tiny_model_dir)).masked_lm("bae")


def test_importing_textattack_changes_nothing_visible(tmp_path: Path) -> None:
    """In a fresh interpreter with sockets refused: the import is offline, and afterwards the
    environment, existing loggers and ``nltk.download`` are as they were."""
    script = textwrap.dedent(
        """
        import json, logging, os, socket
        attempts = []
        def refuse(*args, **kwargs):
            attempts.append(repr(args[:2]))
            raise OSError("blocked")
        real_connect = socket.socket.connect
        def connect(sock, address):
            if sock.family == socket.AF_UNIX:
                return real_connect(sock, address)
            refuse(address)
        socket.socket.connect = connect
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        ours = logging.getLogger("bench.probe")
        import nltk
        download = nltk.download
        env = dict(os.environ)
        from bench.attacks.compat import load_textattack, import_seconds
        ta = load_textattack()
        assert load_textattack() is ta
        changed = sorted(k for k in set(env) | set(os.environ) if env.get(k) != os.environ.get(k))
        stop = ta.constraints.pre_transformation.StopwordModification()
        print(json.dumps({
            "attempts": attempts,
            "changed": changed,
            "disabled": ours.disabled,
            "download_restored": nltk.download is download,
            "stopwords": len(stop.stopwords),
            "seconds": import_seconds(),
        }))
        """
    )
    env = {
        k: v
        for k, v in __import__("os").environ.items()
        if k not in {"FLAIR_CACHE_ROOT", "MPLCONFIGDIR", "TA_CACHE_DIR"}
    }
    env["HF_HOME"] = str(tmp_path / "hf-home")
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["attempts"] == []
    # Only the two variables we set on purpose (when unset) remain.
    assert report["changed"] == ["FLAIR_CACHE_ROOT", "MPLCONFIGDIR"]
    assert report["disabled"] is False
    assert report["download_restored"] is True
    assert report["stopwords"] == 179


def test_every_registry_component_builds(
    assets_ready: None, tiny_model_dir: Path, no_network: NetworkAttempts
) -> None:
    from bench.attacks.components import REGISTRY
    from bench.attacks.specs import CompositionSpec
    from bench.models.classifier import HFClassifier

    wrapper = make_wrapper(HFClassifier.load(str(tiny_model_dir), device="cpu"))
    resources = AttackResources()
    needs_params = {
        "composite": {"of": [{"type": "qwerty"}]},
        "max_words_perturbed": {"max_percent": 0.2},
        "word_embedding_distance": {"min_cos_sim": 0.75},
    }

    def build(kind: str, name: str) -> Any:
        part = {"type": name, "params": needs_params.get(name, {})}
        data: dict[str, Any] = {
            "transformation": {"type": "wordnet"},
            "constraints": [],
            "search": {"type": "greedy"},
        }
        if kind == "constraint":
            data["constraints"] = [part]
        else:
            data[kind] = part
        ctx = BuildContext(resources=resources, input_columns=["text"], attack_name=name)
        return build_attack(CompositionSpec.model_validate(data), wrapper, ctx)

    built = 0
    for kind, components in REGISTRY.items():
        for name, component in components.items():
            if component.needs_masked_lm:  # built in the masked-LM tests above
                continue
            attack = build(kind, name)
            assert attack is not None
            built += 1
    assert built >= 30

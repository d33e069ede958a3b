"""Task specs: YAML registry, validation errors, label mapping, deterministic hash splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.errors import DataError, SpecError
from bench.specs import LocalSource, SplitPlan, TaskSpec, ThresholdLabels
from bench.tasks import build_task_data, discover_tasks, get_task, load_task_data, register_task
from bench.tasks.registry import _reset_python_tasks_for_tests, builtin_tasks_dir

BUILTIN = {
    "vitaminc",
    "presuppositions_as_nli",
    "epistemic_reasoning",
    "analytic_entailment",
    "vader_movies",
    "vader_amazon",
    "vader_nyt",
    "vader_tweets",
    "arithmetic_generated",
}


def _spec(**overrides: object) -> TaskSpec:
    # Explicit splits: one local file without them is a test-only task (tested on its own below).
    data: dict[str, object] = {
        "name": "toy",
        "source": {"type": "local", "path": "toy.jsonl"},
        "inputs": ["text"],
        "labels": ["neg", "pos"],
        "splits": {"fractions": {"train": 0.8, "dev": 0.1, "test": 0.1}},
    }
    data.update(overrides)
    return TaskSpec.model_validate(data)


def _rows(n: int) -> list[dict[str, object]]:
    return [{"text": f"sentence number {i}", "label": ["neg", "pos"][i % 2]} for i in range(n)]


def test_builtin_tasks_are_discovered_and_valid() -> None:
    tasks = discover_tasks()
    assert set(tasks) >= BUILTIN
    assert tasks["vitaminc"].spec.is_pair
    assert tasks["vader_movies"].spec.labels == ["negative", "positive"]
    assert tasks["epistemic_reasoning"].spec.label_aliases["neutral"] == "non-entailment"
    assert builtin_tasks_dir().is_dir()


def test_unknown_task_suggests_near_misses_only() -> None:
    with pytest.raises(SpecError, match=r"unknown task 'vitamnc'; did you mean 'vitaminc'") as info:
        get_task("vitamnc")
    assert len(str(info.value)) < 200
    with pytest.raises(SpecError, match=r"unknown task 'nope'; see `bench tasks list`") as info:
        get_task("nope")
    # No wall of names: the old message listed every known task.
    assert "vader_movies" not in str(info.value)


def test_task_paths_that_are_missing_or_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SpecError, match=r"^task file .*nowhere\.yaml not found$"):
        get_task(str(tmp_path / "nowhere.yaml"))
    with pytest.raises(SpecError, match=r"^task file missing\.yml not found$"):
        get_task("missing.yml")
    with pytest.raises(SpecError, match=r"^task file sub/task not found$"):
        get_task("sub/task")
    (tmp_path / "folder.yaml").mkdir()
    with pytest.raises(SpecError, match=r"folder\.yaml is a directory"):
        get_task(str(tmp_path / "folder.yaml"))
    with pytest.raises(SpecError, match=r"is a directory"):
        get_task(str(tmp_path) + "/")
    # A bare name that happens to be a folder here is still looked up as a name first.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vitaminc").mkdir()
    assert get_task("vitaminc").spec.name == "vitaminc"
    (tmp_path / "vitamin").mkdir()
    with pytest.raises(SpecError, match=r"vitamin is a directory, not a task file; did you mean"):
        get_task("vitamin")


def test_malformed_yaml_is_one_line_spec_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nlabels: [a, b\n")
    with pytest.raises(SpecError, match="malformed YAML") as info:
        get_task(str(bad))
    assert "\n" not in str(info.value)


def test_yaml_with_python_tag_is_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.yaml"
    evil.write_text("name: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(SpecError, match="malformed YAML"):
        get_task(str(evil))


def test_invalid_field_names_the_field(tmp_path: Path) -> None:
    f = tmp_path / "t.yaml"
    f.write_text("name: t\nsource: {type: local, path: a.jsonl}\ninputs: [text]\nlabels: [a]\n")
    with pytest.raises(SpecError, match="field 'labels'"):
        get_task(str(f))


def test_extra_dirs_and_env_path_and_duplicates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "mytask.yaml").write_text(
        "name: mytask\nsource: {type: local, path: d.jsonl}\ninputs: [text]\nlabels: [a, b]\n"
    )
    assert "mytask" in discover_tasks([folder])
    monkeypatch.setenv("BENCH_TASKS_PATH", str(folder))
    assert "mytask" in discover_tasks()
    with pytest.raises(SpecError, match="defined twice"):
        discover_tasks([folder])


def test_register_task_decorator() -> None:
    restore = _reset_python_tasks_for_tests()
    try:

        @register_task
        def pytask() -> TaskSpec:
            return _spec(name="pytask")

        assert discover_tasks()["pytask"].spec.name == "pytask"
        with pytest.raises(SpecError, match="registered twice"):
            register_task(_spec(name="pytask"))
    finally:
        restore()


def test_spec_validation_rules() -> None:
    with pytest.raises(ValueError, match="not in labels"):
        _spec(label_map={"x": "other"})
    with pytest.raises(ValueError, match="exactly one"):
        LocalSource()
    with pytest.raises(ValueError, match="sum to 1"):
        SplitPlan(fractions={"train": 0.5, "test": 0.6})
    with pytest.raises(ValueError, match="name its groups"):
        _spec(source={"type": "bigbench", "task": "x", "input_pattern": "(a)(b)"})


def test_spec_hash_is_canonical() -> None:
    a = _spec(labels=["neg", "pos"])
    b = TaskSpec.model_validate(json.loads(a.canonical()))
    assert a.spec_hash() == b.spec_hash()
    assert a.spec_hash() != _spec(version="2").spec_hash()


def test_split_assignment_is_deterministic_order_free_and_disjoint() -> None:
    spec = _spec()
    rows = _rows(1000)
    a = build_task_data(spec, {"all": rows})
    b = build_task_data(spec, {"all": list(reversed(rows))})
    for role in ("train", "dev", "test"):
        assert {e.uid for e in a.splits[role]} == {e.uid for e in b.splits[role]}
    sizes = {r: len(ex) for r, ex in a.splits.items()}
    assert sum(sizes.values()) == 1000
    assert 720 <= sizes["train"] <= 880  # 0.8 of 1000, hash-uniform
    uids = [{e.uid for e in a.splits[r]} for r in ("train", "dev", "test")]
    assert not (uids[0] & uids[1]) and not (uids[0] & uids[2]) and not (uids[1] & uids[2])
    # Adding rows never moves an existing example to another split.
    c = build_task_data(spec, {"all": [*rows, *_rows(1200)[1000:]]})
    assert {e.uid for e in a.splits["test"]} <= {e.uid for e in c.splits["test"]}


def test_duplicated_inputs_never_straddle_splits() -> None:
    rows = [*_rows(300), {"text": "sentence number 5", "label": "neg"}]
    data = build_task_data(_spec(), {"all": rows})
    where = {r for r, ex in data.splits.items() for e in ex if e.inputs == ("sentence number 5",)}
    assert len(where) == 1


def test_limits_are_seeded_subsamples_in_source_order() -> None:
    spec = _spec(splits={"fractions": {"test": 1.0}, "limits": {"test": 50}})
    data = build_task_data(spec, {"all": _rows(400)})
    test = data.splits["test"]
    assert len(test) == 50
    assert [e.idx for e in test] == list(range(50))
    numbers = [int(e.inputs[0].split()[-1]) for e in test]
    assert numbers == sorted(numbers) and numbers[-1] > 50  # a sample, not the first 50


def test_label_map_threshold_and_int_labels() -> None:
    spec = _spec(label_map={"0": "neg", "1": "pos", "2": None})
    rows = [{"text": "a", "label": 0}, {"text": "b", "label": 1}, {"text": "c", "label": 2}]
    data = build_task_data(
        spec.model_copy(update={"splits": SplitPlan(fractions={"test": 1.0})}), {"all": rows}
    )
    assert sorted((e.inputs[0], e.label) for e in data.splits["test"]) == [("a", 0), ("b", 1)]

    thr = _spec(
        label_threshold=ThresholdLabels(column="rating", below="neg", above="pos"),
        splits={"fractions": {"test": 1.0}},
    )
    rows = [{"text": "x", "rating": -1.5}, {"text": "y", "rating": 0.0}, {"text": "z", "rating": 2}]
    got = sorted((e.inputs[0], e.label) for e in build_task_data(thr, {"all": rows}).splits["test"])
    assert got == [("x", 0), ("z", 1)]

    ints = _spec(splits={"fractions": {"test": 1.0}}, labels_are_indices=True)
    got2 = build_task_data(ints, {"all": [{"text": "q", "label": 1}]}).splits["test"]
    assert got2[0].label == 1
    with pytest.raises(DataError, match="not a position in labels"):
        build_task_data(ints, {"all": [{"text": "q", "label": 2}]})


def test_integer_labels_need_a_label_map_or_labels_are_indices() -> None:
    # labels written in the "wrong" order for data where 0 is negative: by position this used to
    # invert every result silently.
    spec = _spec(labels=["positive", "negative"], splits={"fractions": {"test": 1.0}})
    rows = [{"text": "bad", "label": 0}, {"text": "good", "label": 1}]
    with pytest.raises(DataError) as info:
        build_task_data(spec, {"all": rows})
    message = str(info.value)
    assert "label_map" in message and "labels_are_indices: true" in message
    assert 'label_map: {"0": positive, "1": negative}' in message
    # YAML reads {0: negative} with int keys; they mean the strings the data's labels become.
    mapped = _spec(
        labels=["positive", "negative"],
        label_map={0: "negative", 1: "positive"},
        splits={"fractions": {"test": 1.0}},
    )
    got = {
        e.inputs[0]: mapped.labels[e.label]
        for e in build_task_data(mapped, {"all": rows}).splits["test"]
    }
    assert got == {"bad": "negative", "good": "positive"}
    with pytest.raises(ValueError, match="YAML boolean"):
        _spec(label_map={True: "neg", False: "pos"})
    with pytest.raises(ValueError, match="cannot be combined with label_map"):
        _spec(labels_are_indices=True, label_map={"0": "neg", "1": "pos"})


def test_labels_are_indices_keeps_old_hashes() -> None:
    plain = _spec()
    assert "labels_are_indices" not in plain.canonical()
    assert _spec(labels_are_indices=True).spec_hash() != plain.spec_hash()


def test_unmapped_label_is_a_data_error() -> None:
    with pytest.raises(DataError, match="'maybe' is not one of the task labels"):
        build_task_data(_spec(), {"all": [{"text": "a", "label": "maybe"}]})
    with pytest.raises(DataError, match="not in label_map"):
        build_task_data(_spec(label_map={"x": "neg"}), {"all": [{"text": "a", "label": "y"}]})


def test_missing_column_and_empty_data_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="column 'hypothesis' not found"):
        build_task_data(_spec(inputs=["text", "hypothesis"]), {"all": _rows(5)})
    with pytest.raises(DataError, match="gave no rows"):
        build_task_data(_spec(), {"all": []})
    (tmp_path / "empty.jsonl").write_text("")
    spec = _spec(source={"type": "local", "path": "empty.jsonl"})
    with pytest.raises(DataError):
        load_task_data(spec, tmp_path)


def test_local_jsonl_task_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "toy.jsonl").write_text("\n".join(json.dumps(r) for r in _rows(40)))
    data = load_task_data(_spec(), tmp_path)
    assert sum(len(v) for v in data.splits.values()) == 40
    again = load_task_data(_spec(), tmp_path)
    assert data.data_hash == again.data_hash
    (tmp_path / "toy.jsonl").write_text("\n".join(json.dumps(r) for r in _rows(41)))
    assert load_task_data(_spec(), tmp_path).data_hash != data.data_hash


def test_entry_point_plugins_are_discovered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real (if minimal) installed distribution: a dist-info folder on sys.path declaring the
    # entry point, and the module it names. importlib.metadata finds it like any package.
    (tmp_path / "plugin_tasks_mod.py").write_text(
        "from bench.specs import TaskSpec\n"
        "TASKS = [TaskSpec(name='plugin_task', source={'type': 'local', 'path': 'x.jsonl'},\n"
        "                  inputs=['text'], labels=['a', 'b'])]\n"
    )
    info = tmp_path / "plugin_tasks-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plugin-tasks\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[bench.tasks]\nmine = plugin_tasks_mod:TASKS\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = discover_tasks()
    assert found["plugin_task"].origin == "entry-point:mine"

    (info / "entry_points.txt").write_text("[bench.tasks]\nbroken = no_such_module_xyz:TASKS\n")
    with pytest.raises(SpecError, match="plug-in 'broken'"):
        discover_tasks()


def test_group_by_keeps_groups_in_one_split() -> None:
    spec = _spec(splits={"fractions": {"train": 0.5, "test": 0.5}, "group_by": "meta.group"})
    rows = [
        {"text": f"variant {i} of claim {g}", "label": "pos" if i else "neg", "meta": {"group": g}}
        for g in range(200)
        for i in range(3)
    ]
    data = build_task_data(spec, {"all": rows})
    where: dict[str, set[str]] = {}
    for role, examples in data.splits.items():
        for ex in examples:
            where.setdefault(ex.inputs[0].split(" of ")[1], set()).add(role)
    assert len(where) == 200 and all(len(roles) == 1 for roles in where.values())
    assert set(data.splits) == {"train", "test"}
    with pytest.raises(DataError, match=r"group_by field 'meta\.group' is missing"):
        build_task_data(spec, {"all": [{"text": "x", "label": "pos"}]})


def test_one_local_file_without_splits_is_test_only(tmp_path: Path) -> None:
    rows = _rows(81)
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = tmp_path / "eval.yaml"
    task.write_text(
        "name: eval_set\nsource: {type: local, path: eval.jsonl}\ninputs: [text]\n"
        "labels: [neg, pos]\n"
    )
    item = get_task(str(task))
    assert item.spec.splits == SplitPlan(fractions={"test": 1.0})
    data = load_task_data(item.spec, item.base_dir)
    # The 81-row file used to become a 7-example test split.
    assert set(data.splits) == {"test"} and len(data.splits["test"]) == 81
    # An explicit splits section keeps hashing into fractions, as do files by role.
    task.write_text(task.read_text() + "splits: {fractions: {train: 0.8, dev: 0.1, test: 0.1}}\n")
    hashed = load_task_data(get_task(str(task)).spec, tmp_path)
    assert set(hashed.splits) == {"train", "dev", "test"}
    by_role = _spec(source={"type": "local", "splits": {"train": "a.jsonl", "test": "b.jsonl"}})
    assert by_role.splits.fractions == {"train": 0.8, "dev": 0.1, "test": 0.1}
    # Python specs built from a LocalSource object get the same default.
    built = TaskSpec(
        name="p", source=LocalSource(path="x.jsonl"), inputs=["text"], labels=["a", "b"]
    )
    assert built.splits.fractions == {"test": 1.0}


# Spec hashes of built-in tasks recorded before labels_are_indices and the test-only default for
# local files existed: both changes must leave every existing task's identity alone.
BUILTIN_SPEC_HASHES = {
    "epistemic_reasoning": "e5fe8f2caf5d33fea1cdc1aac8cf22fc8145b1ef3bcdf8aa162d2b2381e60d2f",
    "vader_movies": "1ff9bf5dd57a51e02d3a916ede84c6b534b6db2ba5ee1f133e5ecbbd3f01caaf",
    "vitaminc_2way": "1d0329edba4c8820d553d6df3067586e95ae794cb38b11f1da2e0370ff6eaeae",
    "date_understanding": "ea73bf80999846c5eaf97cb7110b39a3a168b32b7a9e741bc87f2e8fb5259feb",
}
BUILTIN_DATA_HASHES = {
    "epistemic_reasoning": "67d96d9d5e370386f86fb9151535290ec6654b54881f52e27471a3883e3e15da",
    "vader_movies": "db7107ed303ee66db5517d729f3bb91ef35242048685fb85f4078c78bf8ea7cb",
    "vitaminc_2way": "d55d94fd2325a3f6658f26593623720edf446529ca99c3010065c68888225cf8",
    # Generated, so its hash also pins the generator: a change to it is a change of data.
    "arithmetic_generated": "53a7dcc87b1d27e1e596e7b43cc291dcea869d1a54e7e4cecec84d448faec09a",
}


def test_builtin_spec_hashes_are_unchanged() -> None:
    tasks = discover_tasks()
    assert {n: tasks[n].spec.spec_hash() for n in BUILTIN_SPEC_HASHES} == BUILTIN_SPEC_HASHES


@pytest.mark.slow
@pytest.mark.parametrize(
    "task",
    [
        pytest.param("epistemic_reasoning", marks=pytest.mark.assets("bigbench")),
        pytest.param("vader_movies", marks=pytest.mark.assets("vader")),
        pytest.param("vitaminc_2way", marks=pytest.mark.assets("bigbench")),
        "arithmetic_generated",
    ],
)
def test_builtin_data_hashes_are_unchanged(task: str) -> None:
    item = discover_tasks()[task]
    assert load_task_data(item.spec, item.base_dir).data_hash == BUILTIN_DATA_HASHES[task]


@pytest.mark.parametrize(
    ("splits", "message"),
    [
        ({"fractions": {"test": 1.0}, "limits": {"test": -1}}, "split limit for test is -1"),
        ({"fractions": {"test": 1.0}, "limits": {"dev": 0}}, "split limit for dev is 0"),
        ({"fractions": {"train": float("nan"), "test": 1.0}}, "finite, non-negative"),
        ({"fractions": {"train": float("inf"), "test": 1.0}}, "finite, non-negative"),
        ({"fractions": {"train": -0.5, "test": 1.5}}, "finite, non-negative"),
    ],
)
def test_split_plans_that_would_drop_or_misroute_examples_are_refused(
    splits: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _spec(splits=splits)


@pytest.mark.parametrize("threshold", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_label_threshold_is_refused(threshold: float) -> None:
    rule = {"column": "rating", "threshold": threshold, "below": "neg", "above": "pos"}
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        _spec(label_threshold=rule)


@pytest.mark.parametrize("name", ["toy\n", "toy\r\n", "\ntoy", "to y", "x" * 101, "", "-toy"])
def test_bad_task_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="task name") as info:
        _spec(name=name)
    assert len(str(info.value)) < 600  # a 100+ character name is not echoed whole


def test_small_split_warning_and_summary() -> None:
    from bench.tasks.loading import small_split_warning, split_summary

    small = build_task_data(_spec(splits={"fractions": {"test": 1.0}}), {"all": _rows(40)})
    warning = small_split_warning(small, "test")
    assert warning is not None and "only 40 test example" in warning and "\n" not in warning
    assert small_split_warning(small, "train") is None  # empty: an error of its own when used
    assert split_summary(small) == ["train: n=0", "dev: n=0", "test: n=40 (neg 20, pos 20)"]
    big = build_task_data(_spec(splits={"fractions": {"test": 1.0}}), {"all": _rows(100)})
    assert small_split_warning(big, "test") is None

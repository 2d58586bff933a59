"""Which file of a model bundle the service serves (`fstcn.service.loading`): the bundle's fastest graph
by default, the exact crops with FSTCN_EXACT_CROPS=1, the exact crops with one log line when the fast
graphs are missing, a refusal when a graph beside NAME.onnx is another model; one model name and version
in every answer either way; and the thread split chosen from the cores when the settings leave it open.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import onnx
import pytest

from fstcn.core.meta import META_KEY
from fstcn.service.app import create_app
from fstcn.service.engine import ModelLoadError
from fstcn.service.loading import engine_from_settings, served_model_path, thread_split
from fstcn.service.settings import Settings
from tests.service.servers import open_client

LOADING_LOGGER = "fstcn.service.loading"


@pytest.fixture(scope="module")
def bundle(tiny_models: tuple[Path, dict[str, Path]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle folder as `fstcn export --fast-graphs branch` leaves it: tiny.onnx, tiny.frames.onnx and
    tiny.trunk.onnx (the shared trunk to the branch convs)."""
    plain, paths = tiny_models
    folder = tmp_path_factory.mktemp("bundle")
    shutil.copy(plain, folder / "tiny.onnx")
    shutil.copy(paths["exact"], folder / "tiny.frames.onnx")
    shutil.copy(paths["branch"], folder / "tiny.trunk.onnx")
    return folder / "tiny.onnx"


def partial_bundle(bundle: Path, folder: Path, *names: str) -> Path:
    """A copy of `bundle`'s plain graph with only the fast graphs `names` ("frames", "trunk") beside it."""
    folder.mkdir(exist_ok=True)
    shutil.copy(bundle, folder / bundle.name)
    for name in names:
        shutil.copy(bundle.with_name(f"tiny.{name}.onnx"), folder / f"tiny.{name}.onnx")
    return folder / bundle.name


def settings_for(path: Path, **overrides: object) -> Settings:
    return Settings(model_path=path, providers="cpu", intra_op_threads=1, **overrides)  # type: ignore[arg-type]


def loading_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == LOADING_LOGGER]


def test_the_fastest_graph_of_the_bundle_is_served(bundle: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=LOADING_LOGGER):
        engine = engine_from_settings(settings_for(bundle))
    assert engine.form == "shared-branch" and engine.model_path == bundle.with_name("tiny.trunk.onnx")
    assert not any(record.levelno >= logging.WARNING for record in caplog.records)


def test_exact_crops_setting_serves_the_exact_frames_graph(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FSTCN_EXACT_CROPS", "1")
    settings = Settings(model_path=bundle, providers="cpu")
    assert settings.exact_crops
    assert served_model_path(settings) == bundle.with_name("tiny.frames.onnx")
    assert engine_from_settings(settings).form == "exact"
    # without the frames graph: the plain graph, the same exact crops computed on the host
    no_frames = partial_bundle(bundle, tmp_path / "no-frames", "trunk")
    assert engine_from_settings(settings_for(no_frames, exact_crops=True)).form == "plain"


@pytest.mark.parametrize(("beside", "form"), [((), "plain"), (("frames",), "exact")])
def test_a_bundle_without_its_shared_trunk_graph_serves_exact_crops_with_one_line(
    bundle: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, beside: tuple[str, ...], form: str
) -> None:
    path = partial_bundle(bundle, tmp_path / "partial", *beside)
    with caplog.at_level(logging.INFO, logger=LOADING_LOGGER):
        engine = engine_from_settings(settings_for(path))
    assert engine.form == form
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "no shared-trunk graph tiny.trunk.onnx" in warnings[0] and "serving exact crops" in warnings[0]


def test_a_graph_named_directly_is_served_as_it_is(bundle: Path, tmp_path: Path) -> None:
    """Told apart by its metadata, not its file name: a frames graph under any name is served as it is."""
    frames = bundle.with_name("tiny.frames.onnx")
    assert served_model_path(settings_for(frames)) == frames
    assert served_model_path(settings_for(frames, exact_crops=True)) == frames
    renamed = shutil.copy(bundle.with_name("tiny.trunk.onnx"), tmp_path / "fast.onnx")
    assert served_model_path(settings_for(Path(renamed))) == renamed
    with pytest.raises(ModelLoadError, match="names a shared-trunk graph"):
        served_model_path(settings_for(Path(renamed), exact_crops=True))


def test_a_fast_graph_of_another_model_is_refused(bundle: Path, tmp_path: Path) -> None:
    """A stale NAME.trunk.onnx beside a re-exported NAME.onnx must not answer for it."""
    path = partial_bundle(bundle, tmp_path / "stale")
    graph = onnx.load(str(bundle.with_name("tiny.trunk.onnx")))
    for prop in graph.metadata_props:
        if prop.key == META_KEY:
            prop.value = json.dumps({**json.loads(prop.value), "version": "older"})
    onnx.save(graph, str(path.with_name("tiny.trunk.onnx")))
    with pytest.raises(ModelLoadError, match=r"tiny\.trunk\.onnx is tiny older, not the same model as"):
        served_model_path(settings_for(path))


@pytest.mark.parametrize("exact_crops", [False, True])
def test_answers_carry_the_bundle_model_name_and_version_in_either_form(
    bundle: Path, exact_crops: bool
) -> None:
    settings = settings_for(bundle, exact_crops=exact_crops)
    with open_client(create_app(settings)) as client:
        described = client.get("/v1/model").json()
        exposition = client.get("/metrics").text
    plain = engine_from_settings(settings_for(bundle.with_name("tiny.frames.onnx"))).meta
    assert described["form"] == ("exact" if exact_crops else "shared-branch")
    assert (described["name"], described["version"]) == (plain.name, plain.version)
    assert f'name="{plain.name}"' in exposition and f'version="{plain.version}"' in exposition


def test_thread_split_from_the_cores_and_from_the_settings(
    bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    chosen = thread_split(Settings(model_path=bundle, max_concurrent_inferences=2), cores=8)
    assert (chosen.intra_op, chosen.decode, chosen.chosen) == (8, 4, ("intra_op", "decode"))
    assert thread_split(Settings(model_path=bundle, max_concurrent_inferences=4), cores=2).decode == 1
    given = thread_split(Settings(model_path=bundle, intra_op_threads=3, decode_threads=2), cores=8)
    assert (given.intra_op, given.decode, given.chosen) == (3, 2, ())
    assert given.describe() == ("threads: 8 cores; ONNX Runtime intra-op 3 (set), FFmpeg 2 per video (set)")
    with caplog.at_level(logging.INFO, logger=LOADING_LOGGER):
        engine_from_settings(Settings(model_path=bundle, providers="cpu", decode_threads=1))
    lines = [line for line in loading_lines(caplog) if line.startswith("threads:")]
    assert len(lines) == 1 and "FFmpeg 1 per video (set)" in lines[0] and "(chosen)" in lines[0]

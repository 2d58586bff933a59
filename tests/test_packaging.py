"""What a user installs (docs/design.md, "Packaging"): the `packages` list of pyproject.toml against the
folders it maps, the wheel's contents, and the wheel installed on its own serving a prediction.

The wheel is built from a copy of the working tree (an in-tree build would write build/ and *.egg-info
into the shared checkout). The fresh virtualenv gets the serving dependencies without a download: a
`.pth` file holds the development venv's site-packages as one plain path line, so Python appends that
folder to sys.path without running the `.pth` files inside it: the development install's editable hook,
which maps `fstcn` to this checkout, stays off, and `fstcn` can only come from the wheel.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.service.servers import free_port, wait_ready
from tests.videos import write_video

REPO = Path(__file__).resolve().parent.parent
SETUPTOOLS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
# Not source: what a checkout accumulates and a build must not see.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "data", "runs", ".cache", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".gl"
)
DEFAULT_MODEL = "fstcn/models/fstcn-small.onnx"


def mapped_folders() -> dict[str, Path]:
    """Package -> folder of every `package-dir` root."""
    return {package: REPO / folder for package, folder in SETUPTOOLS["package-dir"].items()}


def folder_packages(package: str, root: Path) -> Iterator[tuple[str, Path]]:
    """(package name, folder) of every folder holding Python code under `root`, root included."""
    for folder in sorted([root, *(path for path in root.rglob("*") if path.is_dir())]):
        if folder.name != "__pycache__" and any(folder.glob("*.py")):
            yield ".".join((package, *folder.relative_to(root).parts)), folder


def test_the_packages_list_is_the_folders_with_an_init() -> None:
    found: dict[str, Path] = {}
    for package, root in mapped_folders().items():
        assert root.is_dir(), f"pyproject.toml maps {package} to a missing folder {root}"
        found.update(folder_packages(package, root))
    without_init = sorted(
        str(path.relative_to(REPO)) for path in found.values() if not (path / "__init__.py").is_file()
    )
    # A code folder without __init__.py would be left out of the wheel without a word.
    assert without_init == [], f"Python code in folders without __init__.py: {without_init}"
    listed = set(SETUPTOOLS["packages"])
    assert (sorted(set(found) - listed), sorted(listed - set(found))) == ([], []), (
        "pyproject.toml's [tool.setuptools] packages must list every mapped folder with an __init__.py "
        "(missing, extra)"
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE, symlinks=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(work),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = work.glob("fstcn-*.whl")
    return built


@pytest.mark.slow
def test_the_wheel_holds_one_namespace_and_the_model_and_nothing_of_the_lab(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert {name for name in top if not name.endswith(".dist-info")} == {"fstcn"}
    assert len(top) == 2, f"one dist-info beside fstcn, found {sorted(top)}"
    assert DEFAULT_MODEL in names
    assert {
        "fstcn/core/runtime.py",
        "fstcn/service/app.py",
        "fstcn/model/network.py",
        "fstcn/bench/runner.py",
        "fstcn/service/static/index.html",  # the demo page at /
        "fstcn/service/static/app.js",
        "fstcn/service/static/style.css",
    } <= set(names)
    assert [name for name in names if name.endswith(".json")] == [], "benchmark results are not packaged"
    lab = [name for name in names if {"experiments", "tests", "results"} & set(name.split("/"))]
    assert lab == []


@pytest.mark.slow
def test_the_installed_wheel_serves_a_prediction_from_anywhere(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    site = Path(
        subprocess.check_output(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    (site / "dev-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    anywhere = tmp_path / "elsewhere"
    anywhere.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("FSTCN_", "PYTHON"))}
    env["FSTCN_PROVIDERS"] = "cpu"
    where = subprocess.check_output(
        [
            str(python),
            "-c",
            "import fstcn, fstcn.core, fstcn.models as bundle; "
            "print(fstcn.__file__, fstcn.core.__file__, bundle.default_model_path())",
        ],
        cwd=anywhere,
        env=env,
        text=True,
    ).split()
    assert all(Path(path).is_relative_to(venv) for path in where), where

    video = write_video(tmp_path / "clip.mp4", seconds=3.0, width=160, height=120)
    port = free_port()
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [str(venv / "bin" / "fstcn"), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=anywhere,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            try:
                wait_ready(http.get, timeout_s=120)
            except TimeoutError:
                raise AssertionError(f"fstcn serve did not become ready:\n{log_path.read_text()}") from None
            response = http.post("/predict", files={"file": ("clip.mp4", video.read_bytes(), "video/mp4")})
            page, script = http.get("/"), http.get("/static/app.js")  # the demo page, from package data
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"]["name"] == "fstcn-small" and body["predictions"]
        assert body["predictions"][0]["score"] > 0
        assert page.status_code == 200 and '<script src="/static/app.js"' in page.text
        assert script.status_code == 200 and "/predict" in script.text
        # the bundle inside the fresh venv, not this checkout's models/
        assert str(venv / "lib") in log_path.read_text()
    finally:
        os.kill(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.kill(server.pid, signal.SIGKILL)
            server.wait()

"""The service never imports torch (SPEC 1): statically, and by running it with torch made unimportable."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.service.servers import REPO

# Modules the service imports from outside service/.
SHARED = [REPO / "model" / "__init__.py", REPO / "model" / "meta.py", REPO / "model" / "clips.py"]

BLOCKED_RUN = r"""
import importlib.abc, json, pkgutil, sys, time, warnings

class BlockTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"{name} is blocked: the service must not import torch")
        return None

sys.meta_path.insert(0, BlockTorch())
model_path, video_path = sys.argv[1], sys.argv[2]

import service
for module in pkgutil.walk_packages(service.__path__, "service."):
    if module.name != "service.openapi":  # needs pyyaml, a dev tool
        __import__(module.name)

from service.app import create_app
from service.settings import Settings
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

app = create_app(Settings(model_path=model_path, providers="cpu"))
with TestClient(app) as client:
    while client.get("/readyz").status_code != 200:
        time.sleep(0.02)
    with open(video_path, "rb") as f:
        response = client.post("/predict?crops=2", files={"file": ("v.mp4", f)})
print(json.dumps({"status": response.status_code, "body": response.json(),
                  "torch_loaded": any(m == "torch" or m.startswith("torch.") for m in sys.modules)}))
"""


def torch_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found += [
            f"{path.relative_to(REPO)}:{node.lineno} {name}"
            for name in names
            if name.split(".")[0] == "torch"
        ]
    return found


def test_no_service_file_imports_torch() -> None:
    files = sorted((REPO / "service").rglob("*.py")) + SHARED
    assert len(files) > 10
    assert [hit for path in files for hit in torch_imports(path)] == []


def test_the_service_runs_end_to_end_with_torch_unimportable(
    fake_model_path: Path, video_factory: Callable[..., Path]
) -> None:
    video = video_factory("no-torch.mp4", width=160, height=120)
    result = subprocess.run(
        [sys.executable, "-c", BLOCKED_RUN, str(fake_model_path), str(video)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["status"] == 200, report
    assert report["body"]["predictions"] and not report["torch_loaded"]

"""The service runs with torch made unimportable (tests/test_layers.py checks every import statically)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.service.servers import REPO

BLOCKED_RUN = r"""
import importlib.abc, json, pkgutil, sys, time, warnings

class BlockTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"{name} is blocked: the service must not import torch")
        return None

sys.meta_path.insert(0, BlockTorch())
model_path, video_path = sys.argv[1], sys.argv[2]

import fstcn.core, fstcn.service
for package in (fstcn.core, fstcn.service):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if module.name != "fstcn.service.openapi":  # needs pyyaml, a dev tool
            __import__(module.name)

from fstcn.service.app import create_app
from fstcn.service.settings import Settings
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

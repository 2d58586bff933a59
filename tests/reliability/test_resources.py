"""Limits cut bombs before they allocate: peak memory of opening a declared-16000x16000 H.264 file.

Each measurement runs in a fresh subprocess and reports its VmHWM (peak RSS) growth, so earlier tests
cannot hide an allocation. The positive control opens the bomb the naive way (`av.open`, no
`max_pixels`): FFmpeg's stream probing decodes the first frame at the declared size and the peak grows
by hundreds of MiB, so the measurement can see an allocation. The service's `probe_video` (which gives
every decoder `max_pixels`) refuses the same file with `video_too_large` while the peak grows by only
the H.264 decoder's per-macroblock tables (~64-90 MiB for 1000x1000 macroblocks; FFmpeg allocates them
before it checks `max_pixels`, and its own size check caps them at about this much).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.corpus import CASES_BY_NAME, Workspace

REPO = Path(__file__).resolve().parents[2]
NAIVE_GROWTH_AT_LEAST_MIB = 300  # one 16000x16000 yuv420p frame is 366 MiB
SERVICE_GROWTH_BOUND_MIB = 128

_MEASURE = r"""
import json, sys
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
import av
from fstcn.core.errors import FstcnError
from fstcn.core.video.decode import probe_video
path, mode = sys.argv[1], sys.argv[2]
before = hwm()
outcome = "opened"
try:
    if mode == "naive":
        with av.open(path) as container:
            outcome = "%dx%d" % (container.streams.video[0].width, container.streams.video[0].height)
    else:
        probe_video(path)
except FstcnError as error:
    outcome = error.code
print(json.dumps({"growth_kib": hwm() - before, "outcome": outcome}))
"""


def _measure(path: Path, mode: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path), mode],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow
def test_max_pixels_keeps_a_declared_16000x16000_frame_from_being_allocated(
    tmp_path: Path, report: dict[str, Any]
) -> None:
    workspace = Workspace(tmp_path, tmp_path / "unused-canary", "http://127.0.0.1:9")
    bomb = tmp_path / "bomb.mp4"
    bomb.write_bytes(CASES_BY_NAME["mp4-sps-16000x16000"].build(workspace))
    naive = _measure(bomb, "naive")
    service = _measure(bomb, "service")
    report["bomb_16000"] = {
        "naive_growth_mib": round(naive["growth_kib"] / 1024, 1),
        "service_growth_mib": round(service["growth_kib"] / 1024, 1),
    }
    assert naive["outcome"] == "16000x16000"
    assert naive["growth_kib"] / 1024 > NAIVE_GROWTH_AT_LEAST_MIB, naive  # the measurement sees allocations
    assert service["outcome"] == "video_too_large"
    assert service["growth_kib"] / 1024 < SERVICE_GROWTH_BOUND_MIB, service

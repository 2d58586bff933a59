"""The benchmark's own machinery: statistics, interleaved timing, FLOP counts, profile summaries,
targets, the report, the load generator (against a stub server) and the CLI's argument handling.
Correctness only: no speed is asserted and nothing long runs."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av
import pytest
from rich.console import Console
from typer.testing import CliRunner

from fstcn.bench.core import Stats, interleaved, lower_conv_macs, network_flops, ratio_stats, request_flops
from fstcn.bench.loadgen import free_port, run_load
from fstcn.bench.markdown import render as render_markdown
from fstcn.bench.media import write_bench_video
from fstcn.bench.report import render
from fstcn.bench.runner import BenchConfig, summarise_profile, targets
from fstcn.cli import app
from fstcn.core.presets import PRESETS


def test_stats_and_ratios() -> None:
    stats = Stats.of([3.0, 1.0, 2.0, 10.0])
    assert (stats.median, stats.min, stats.max, stats.n) == (2.5, 1.0, 10.0, 4)
    assert stats.spread == pytest.approx(9.0 / 2.5)
    assert stats.to_dict(1000.0)["median"] == 2500.0 and stats.to_dict(1000.0)["n"] == 4
    assert ratio_stats([4.0, 9.0], [2.0, 3.0]).median == pytest.approx(2.5)
    with pytest.raises(ValueError):
        Stats.of([])
    with pytest.raises(ValueError):
        ratio_stats([1.0], [1.0, 2.0])


def test_interleaved_runs_round_robin_after_warmup() -> None:
    calls: list[str] = []
    started = time.perf_counter()
    times = interleaved(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1, settle_s=0.02
    )
    assert calls == ["a", "b"] + ["a", "b"] * 3
    assert {name: len(values) for name, values in times.items()} == {"a": 3, "b": 3}
    # each timed call waits for the previous one's threads to settle, and the wait is not timed
    assert time.perf_counter() - started >= 6 * 0.02
    assert max(max(values) for values in times.values()) < 0.02
    with pytest.raises(ValueError, match="settle_s"):
        interleaved({"a": lambda: None}, repeats=1, settle_s=-1.0)


def test_flops_agree_with_the_network_summary_and_shape_rules() -> None:
    small = PRESETS["small"]
    flops = network_flops(small, 10)
    # the docstring of model.presets: 0.19 GMACs per clip pair; ~89% in the lower SCL since the upper
    # convs see 6x6 maps (no pool before the T-P operator)
    assert 0.18e9 < flops.total < 0.2e9 and flops.lower_conv / flops.total > 0.85
    assert lower_conv_macs(small, 112, 112) == flops.lower_per_frame
    request = request_flops(small, 10, clips=5, crops=18, height=112, width=112)
    assert request["plain_total"] == 2 * 90 * flops.total
    # on a crop-sized frame the trunk does the per-frame work once per view instead of once per crop
    assert request["shared_conv"] == 2 * (30 * 2 * flops.lower_per_frame + 90 * flops.upper_conv)
    assert request["branch_total"] < request["shared_total"] < request["plain_total"]


def test_profile_summary_leaves_the_first_run_out() -> None:
    events = [
        {"name": "model_run", "cat": "Session", "ts": 0, "dur": 100},
        {"name": "conv1_kernel_time", "cat": "Node", "ts": 10, "dur": 90, "args": {"op_name": "Conv"}},
        {"name": "model_run", "cat": "Session", "ts": 200, "dur": 50},
        {"name": "conv1_kernel_time", "cat": "Node", "ts": 210, "dur": 30, "args": {"op_name": "Conv"}},
        {"name": "relu_kernel_time", "cat": "Node", "ts": 240, "dur": 10, "args": {"op_name": "Relu"}},
        {"name": "model_run", "cat": "Session", "ts": 300, "dur": 50},
        {"name": "conv1_kernel_time", "cat": "Node", "ts": 310, "dur": 50, "args": {"op_name": "Conv"}},
    ]
    assert summarise_profile(events) == {"Conv": 0.04, "Relu": 0.005}
    with pytest.raises(ValueError):
        summarise_profile(events[:2])


def test_targets_and_report_render_partial_results() -> None:
    results: dict[str, Any] = {
        "config": {"threads": 2, "repeats": 3, "model": "m.onnx", "trained_weights": False},
        "load_average": {"start": [1.0, 1.0, 1.0], "end": [1.5, 1.0, 1.0]},
        "engines": {
            "rows": 90,
            "times_ms": {"ort_plain": Stats.of([100.0, 110.0]).to_dict()},
            "achieved_gflops": {"ort_plain": 50.0},
            "ratios": {
                "ort_plain_vs_torch_eager": Stats.of([3.5, 3.6]).to_dict(),
                "shared_trunk_vs_exact_frames": Stats.of([3.0]).to_dict(),
                "shared_branch_vs_exact_frames": Stats.of([5.0]).to_dict(),
            },
        },
        "agreement": {
            "top1_agreement_shared_branch": 0.98,
            "recheck_shared_branch": {"0.05": {"rate": 0.05, "top1_agreement": 0.995, "accuracy": 0.9}},
        },
        "decode": {
            "times_ms": {"long_600s": Stats.of([5.0]).to_dict()},
            "long_vs_short": Stats.of([2.0]).to_dict(),
            "frames": {},
        },
    }
    rows = {row["target"]: row for row in targets(results)}
    assert rows["ORT vs PyTorch eager"]["met"] is True
    assert rows["shared trunk vs exact 18 crops"]["met"] is False
    assert rows["decode+sampling 10 min vs 10 s, keyframe every 10 s"]["met"] is True
    assert rows["top-1 agreement shared_trunk"]["met"] is None  # not measured: neither met nor failed
    assert rows["top-1 agreement shared_branch"]["met"] is False
    assert rows["top-1 agreement shared_branch + recheck under lead 0.05"]["met"] is True
    # 5x per round, 5% of the videos also scored exactly: 1 / (1/5 + 0.05) = 4x
    speed = rows["shared_branch + recheck vs exact 18 crops (from the recheck rate)"]
    assert speed["measured"] == pytest.approx(4.0) and speed["met"] is True
    assert rows["shared_trunk + recheck vs exact 18 crops (from the recheck rate)"]["met"] is None
    results["targets"] = list(rows.values())
    console = Console(record=True, width=150)
    console.print(render(results))
    text = console.export_text()
    assert "ort_plain" in text and "targets" in text
    markdown = render_markdown(results)
    assert "| ORT vs PyTorch eager | >= 3x | 3.55 | True |" in markdown


class _StubPredict(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps({"timing_ms": {"decode": 1.0, "infer": 2.0, "total": 3.0}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_load_generator_counts_every_request(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _StubPredict)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        video = tmp_path / "v.mp4"
        video.write_bytes(b"\0" * 1000)
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = run_load(url, video, concurrency=3, requests=7)
    finally:
        server.shutdown()
    assert len(result.latencies_s) == 7 and not result.errors
    assert result.timings_ms[0]["decode"] == 1.0 and result.videos_per_s > 0


def test_bench_video_is_h264_with_the_asked_keyframe_interval(tmp_path: Path) -> None:
    path = write_bench_video(tmp_path / "v.mp4", 1.2, 64, 48, keyint=10)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        keyframes = [p.pts for p in container.demux(stream) if p.is_keyframe and p.pts is not None]
        assert stream.codec_context.name == "h264" and (stream.width, stream.height) == (64, 48)
    assert len(keyframes) == 3  # frames 0, 10, 20 of 30


def test_bench_config_and_cli_reject_unknown_sections() -> None:
    with pytest.raises(ValueError, match="unknown sections"):
        BenchConfig(sections=("peak", "warp"))
    assert BenchConfig(threads=0).threads >= 1
    result = CliRunner().invoke(app, ["bench", "--sections", "warp"])
    assert result.exit_code != 0 and "unknown sections" in result.output
    assert CliRunner().invoke(app, ["bench", "--help"]).exit_code == 0


def test_fstcn_bench_writes_the_complete_results_json(tmp_path: Path) -> None:
    """The JSON file holds the whole run, targets included (the runner writes it, not only per section)."""
    out = tmp_path / "results.json"
    result = CliRunner().invoke(
        app, ["bench", "--sections", "peak", "--repeats", "1", "--cache", str(tmp_path), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    assert saved["peak"]["peak_gflops"] > 0
    assert "targets" in saved and "seconds" in saved and "end" in saved["load_average"]


def test_gpu_bench_runs_its_cpu_fallback_on_the_tiny_preset(tmp_path: Path) -> None:
    from fstcn.bench.gpu_bench import main
    from tests.videos import write_video

    video = write_video(tmp_path / "clip.mp4", seconds=2.0, width=64, height=48)
    out = tmp_path / "gpu.json"
    assert (
        main(["--preset", "tiny", "--iters", "1", "--video", str(video), "--out", str(out), "--skip-onnx"])
        == 0
    )
    results = json.loads(out.read_text())
    assert results["device"].startswith("cpu") and results["decoder"].startswith("pyav")
    for dtype in ("fp32", "bf16"):
        row = results["torch"][dtype]
        assert row["videos_per_s_model_only"] > 0 and 0 < row["decode_share_end_to_end"] < 1


def test_gpu_bench_onnx_and_pipeline_steps_run_on_the_cpu_provider(tmp_path: Path) -> None:
    from fstcn.bench.gpu_bench import main
    from tests.videos import write_video

    video = write_video(tmp_path / "clip.mp4", seconds=2.0, width=64, height=48)
    out = tmp_path / "gpu.json"
    argv = ["--preset", "tiny", "--iters", "1", "--video", str(video), "--out", str(out), "--skip-torch"]
    assert main([*argv, "--onnx-on-cpu"]) == 0
    results = json.loads(out.read_text())
    engine = results["onnxruntime"]
    assert engine["tiny fp32"]["providers"] == ["CPUExecutionProvider"]
    assert engine["tiny fp16"]["4_videos_per_run"]["videos_per_s"] > 0
    breakdown = engine["tiny fp32"]["breakdown"]
    assert breakdown["kernel_ms_per_run_total"] > 0 and "Conv" in breakdown["kernel_ms_per_run_by_op"]
    assert not list(Path.cwd().glob("onnxruntime_profile*"))  # the profiler's file went to a temporary folder
    pipeline = results["service_pipeline"]
    assert {"tiny fp32 plain", "tiny fp32 frames graph"} <= pipeline.keys()
    for row in pipeline.values():
        assert set(row["stage_ms"]) == {"decode", "preprocess", "infer", "fuse"} and row["total_ms"] > 0

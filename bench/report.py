"""Readable tables of a benchmark run (rich), from the JSON results of `bench.runner.run`."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table

_DECODE_FILES = {
    "long_600s": "long_600s_640x360.mp4",
    "short_10s": "short_10s_640x360.mp4",
    "long_600s_gop50": "long_600s_640x360_gop50.mp4",
    "short_10s_gop50": "short_10s_640x360_gop50.mp4",
}


def _fmt(stats: dict[str, float] | None, unit: str = "") -> str:
    if not stats:
        return "-"
    return f"{stats['median']:.2f}{unit} [{stats['min']:.2f}-{stats['max']:.2f}]"


def render(results: dict[str, Any]) -> Group:
    """One table per section that ran, plus the targets."""
    tables: list[Table] = []
    load = results.get("load_average", {})
    head = Table(title="machine and run", show_header=False)
    cpu = results.get("machine", {})
    head.add_row("CPU", f"{cpu.get('Model name', '?')} ({cpu.get('os.cpu_count')} CPUs)")
    head.add_row("threads / repeats", f"{results['config']['threads']} / {results['config']['repeats']}")
    head.add_row("model", f"{results['config']['model']} (trained: {results['config']['trained_weights']})")
    head.add_row("load average start -> end", f"{load.get('start', ['?'])[0]} -> {load.get('end', ['?'])[0]}")
    tables.append(head)

    if "peak" in results:
        peak = results["peak"]
        table = Table(title="SGEMM peak (numpy float32 matmul)")
        table.add_column("threads")
        table.add_column("peak GFLOP/s")
        table.add_column("runs (median [min-max])")
        table.add_row(str(peak["threads"]), f"{peak['peak_gflops']:.1f}", _fmt(peak["runs"]))
        tables.append(table)

    if "engines" in results:
        engines = results["engines"]
        table = Table(title=f"one request: {engines['rows']} rows (5 clips x 18 crops), ms median [min-max]")
        table.add_column("candidate")
        table.add_column("ms")
        table.add_column("GFLOP/s")
        for name, stats in engines["times_ms"].items():
            achieved = engines["achieved_gflops"].get(name)
            table.add_row(name, _fmt(stats), f"{achieved:.1f}" if achieved else "")
        for name, stats in engines["ratios"].items():
            table.add_row(f"ratio {name}", _fmt(stats, "x"), "")
        tables.append(table)

    if "profile" in results:
        table = Table(title="ONNX Runtime profile: convolutions vs SGEMM peak")
        for column in ("graph", "kernel ms/run", "conv ms/run", "conv GFLOP/s", "% of peak", "top ops (ms)"):
            table.add_column(column)
        for name in ("plain", "shared_trunk", "shared_branch"):
            row = results["profile"].get(name)
            if row:
                top = ", ".join(f"{op} {ms:.0f}" for op, ms in list(row["ms_per_run_by_op"].items())[:5])
                table.add_row(
                    name,
                    f"{row['kernel_ms_per_run']:.0f}",
                    f"{row['conv_ms_per_run']:.0f}",
                    f"{row['conv_gflops']:.1f}",
                    f"{row['conv_pct_of_peak']:.0f}%",
                    top,
                )
        tables.append(table)

    if "stages" in results:
        table = Table(title="data plane per stage (10 s 320x240 clip), ms median [min-max]")
        stages = ("decode", "preprocess", "infer", "fuse", "total")
        table.add_column("model")
        for stage in stages:
            table.add_column(stage)
        table.add_column("decode share")
        for name, row in results["stages"].items():
            if isinstance(row, dict) and "total" in row:
                table.add_row(name, *(_fmt(row.get(stage)) for stage in stages), f"{row['decode_share']:.0%}")
        tables.append(table)

    if "decode" in results:
        decode = results["decode"]
        table = Table(title="decode + sampling (5 clip pairs), 640x360 H.264")
        table.add_column("video")
        table.add_column("ms")
        table.add_column("frames decoded / kept")
        for name, stats in decode["times_ms"].items():
            frames = decode["frames"].get(_DECODE_FILES.get(name, ""), {})
            table.add_row(
                name, _fmt(stats), f"{frames.get('frames_decoded', '')} / {frames.get('frames_kept', '')}"
            )
        table.add_row("ratio long / short", _fmt(decode["long_vs_short"], "x"), "")
        if "long_vs_short_gop50" in decode:
            table.add_row("ratio long / short, gop50", _fmt(decode["long_vs_short_gop50"], "x"), "")
        tables.append(table)

    if "ort" in results:
        table = Table(title="ONNX Runtime session options (speed vs default, median [min-max])")
        table.add_column("option")
        graphs = [name for name in ("plain", "shared_trunk", "shared_branch") if name in results["ort"]]
        for name in graphs:
            table.add_column(f"{name} ms")
            table.add_column(f"{name} speed")
        options = list(results["ort"][graphs[0]]) if graphs else []
        for option in options:
            cells = []
            for name in graphs:
                row = results["ort"][name][option]
                cells += [_fmt(row["ms"]), _fmt(row["speed_vs_default"], "x")]
            table.add_row(option, *cells)
        tables.append(table)

    if "http" in results:
        table = Table(title="POST /predict (10 s 320x240 25 fps H.264)")
        for column in (
            "server",
            "concurrency",
            "videos/s",
            "p50 ms",
            "p95 ms",
            "decode ms",
            "decode share",
            "errors",
        ):
            table.add_column(column)
        for name, levels in results["http"].items():
            if not isinstance(levels, dict):
                continue
            for level, row in levels.items():
                if "p50_ms" in row:
                    table.add_row(
                        name,
                        level,
                        f"{row['videos_per_s']:.2f}",
                        f"{row['p50_ms']:.0f}",
                        f"{row['p95_ms']:.0f}",
                        f"{row['decode_ms_p50']:.0f}",
                        f"{row['decode_share']:.0%}",
                        str(len(row["errors"])),
                    )
        tables.append(table)

    if "agreement" in results:
        row = results["agreement"]
        table = Table(title="shared trunk vs exact 18 crops (top-1)", show_header=False)
        for key, value in row.items():
            if not isinstance(value, list) and key not in ("load_before", "load_after"):
                table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
        tables.append(table)

    table = Table(title="targets")
    for column in ("target", "goal", "measured", "met"):
        table.add_column(column)
    for row in results.get("targets", []):
        value = row["measured"]
        table.add_row(row["target"], row["goal"], "-" if value is None else f"{value:.3g}", str(row["met"]))
    tables.append(table)
    return Group(*tables)

"""Markdown tables of a benchmark run (for bench/RESULTS.md): `python -m bench.markdown results.json`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _s(stats: dict[str, float] | None, unit: str = "", digits: int = 0) -> str:
    if not stats:
        return "-"
    return f"{stats['median']:.{digits}f}{unit} [{stats['min']:.{digits}f}-{stats['max']:.{digits}f}]"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render(results: dict[str, Any]) -> str:
    out: list[str] = []
    load = results.get("load_average", {})
    out.append(
        f"Run {results.get('started')}: {results['config']['threads']} threads, "
        f"{results['config']['repeats']} repetitions, load average "
        f"{load.get('start', ['?'])[0]:.1f} at the start and "
        f"{load.get('end', ['?'])[0]:.1f} at the end, {results.get('seconds')} s. Medians [min-max]."
    )
    if "peak" in results:
        peak = results["peak"]
        out.append(
            f"\nSGEMM peak ({peak['threads']} threads, {peak['blas']}): "
            f"**{peak['peak_gflops']:.1f} GFLOP/s** (runs {_s(peak['runs'], digits=1)})."
        )
    if "engines" in results:
        engines = results["engines"]
        rows = [
            [
                name,
                _s(stats),
                f"{engines['achieved_gflops'][name]:.1f}" if name in engines["achieved_gflops"] else "",
            ]
            for name, stats in engines["times_ms"].items()
        ]
        out.append("\n" + _table(["one request (90 rows)", "ms", "GFLOP/s"], rows))
        ratio_rows = [[name, _s(stats, "x", 2)] for name, stats in engines["ratios"].items()]
        out.append("\n" + _table(["ratio (per round)", "median [min-max]"], ratio_rows))
        out.append(
            "\nGFLOP per request: "
            + ", ".join(f"{key} {value:.2f}" for key, value in engines.get("gflop_per_request", {}).items())
        )
    if "profile" in results:
        rows = []
        for name in ("plain", "shared_trunk", "shared_branch"):
            row = results["profile"].get(name)
            if row:
                top = ", ".join(f"{op} {ms:.0f}" for op, ms in list(row["ms_per_run_by_op"].items())[:8])
                rows.append(
                    [
                        name,
                        f"{row['kernel_ms_per_run']:.0f}",
                        f"{row['conv_ms_per_run']:.0f}",
                        f"{row['conv_gflops']:.1f}",
                        f"{row['conv_pct_of_peak']:.0f}%",
                        top,
                    ]
                )
        out.append(
            "\n"
            + _table(
                ["graph", "kernel ms/run", "conv ms/run", "conv GFLOP/s", "of peak", "ms by op type"], rows
            )
        )
    if "stages" in results:
        stages = ("decode", "preprocess", "infer", "fuse", "total")
        rows = [
            [name, *(_s(row.get(stage)) for stage in stages), f"{row['decode_share']:.0%}"]
            for name, row in results["stages"].items()
            if isinstance(row, dict) and "total" in row
        ]
        out.append("\n" + _table(["model", *stages, "decode share"], rows))
    if "decode" in results:
        decode = results["decode"]
        files = {
            "long_600s": "long_600s_640x360.mp4",
            "short_10s": "short_10s_640x360.mp4",
            "long_600s_gop50": "long_600s_640x360_gop50.mp4",
            "short_10s_gop50": "short_10s_640x360_gop50.mp4",
        }
        rows = []
        for name, stats in decode["times_ms"].items():
            frames = decode["frames"].get(files.get(name, ""), {})
            rows.append([name, _s(stats), str(frames.get("frames_decoded", "all"))])
        rows.append(["ratio long / short (keyframe every 10 s)", _s(decode["long_vs_short"], "x", 2), ""])
        rows.append(
            ["ratio long / short (keyframe every 2 s)", _s(decode.get("long_vs_short_gop50"), "x", 2), ""]
        )
        out.append("\n" + _table(["video", "decode + sampling ms", "frames decoded"], rows))
    if "ort" in results:
        graphs = [name for name in ("plain", "shared_trunk", "shared_branch") if name in results["ort"]]
        options = list(results["ort"][graphs[0]])
        rows = [
            [option, *(_s(results["ort"][g][option]["speed_vs_default"], "x", 2) for g in graphs)]
            for option in options
        ]
        out.append("\n" + _table(["session option (speed vs default)", *graphs], rows))
    if "http" in results:
        rows = []
        for name, levels in results["http"].items():
            if isinstance(levels, dict):
                for level, row in levels.items():
                    if "p50_ms" in row:
                        rows.append(
                            [
                                name,
                                level,
                                str(row["requests"]),
                                f"{row['videos_per_s']:.2f}",
                                f"{row['p50_ms']:.0f}",
                                f"{row['p95_ms']:.0f}",
                                f"{row['decode_ms_p50']:.0f}",
                                f"{row['decode_share']:.0%}",
                                str(len(row["errors"])),
                                f"{row['load']:.1f}",
                            ]
                        )
        out.append(
            "\n"
            + _table(
                [
                    "server",
                    "concurrency",
                    "requests",
                    "videos/s",
                    "p50 ms",
                    "p95 ms",
                    "decode ms",
                    "decode share",
                    "errors",
                    "load",
                ],
                rows,
            )
        )
    if "agreement" in results:
        row = results["agreement"]
        out.append(
            "\n"
            + _table(
                ["agreement", "value"],
                [
                    [k, f"{v:.4f}" if isinstance(v, float) else str(v)]
                    for k, v in row.items()
                    if not isinstance(v, list)
                ],
            )
        )
    rows = [
        [r["target"], r["goal"], "-" if r["measured"] is None else f"{r['measured']:.3g}", str(r["met"])]
        for r in results.get("targets", [])
    ]
    out.append("\n" + _table(["target", "goal", "measured (median)", "met"], rows))
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render(json.loads(Path(sys.argv[1]).read_text())))

"""What a benchmark report shows: one `Table` (title, column headers, rows of strings) per part of a
`runner.run` results dict, in report order, with every number already formatted. `fstcn.bench.markdown`
(bench/RESULTS.md) and `fstcn.bench.report` (`fstcn bench`'s console) only lay these tables out, so the two
always show the same figures; a section that did not run (or a partial result) gives no table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

GRAPHS = ("plain", "shared_trunk", "shared_branch")
STAGES = ("decode", "preprocess", "infer", "fuse", "total")
PROFILE_TOP_OPS = 8
# the decode section keys its timings by case and its frame counts by file
DECODE_FILES = {
    "long_600s": "long_600s_640x360.mp4",
    "short_10s": "short_10s_640x360.mp4",
    "long_600s_gop50": "long_600s_640x360_gop50.mp4",
    "short_10s_gop50": "short_10s_640x360_gop50.mp4",
    "long_600s_one_decoder": "long_600s_640x360.mp4",
}


@dataclass(frozen=True)
class Table:
    """One report table: `rows` are lists of cell strings, each as long as `columns`."""

    title: str
    columns: list[str]
    rows: list[list[str]]

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(
                    f"table {self.title!r}: row {row} has {len(row)} cells for {len(self.columns)} columns"
                )


def stats_text(stats: dict[str, float] | None, unit: str = "", digits: int | None = None) -> str:
    """ "median [min-max]" of a `Stats.to_dict()`; digits=None picks them from the median's size
    (961 [919-972], 71.2 [..], 0.42 [0.28-0.49]) so small stages do not print as 0."""
    if not stats:
        return "-"
    if digits is None:
        median = abs(stats["median"])
        digits = 0 if median >= 100 else 1 if median >= 10 else 2
    return f"{stats['median']:.{digits}f}{unit} [{stats['min']:.{digits}f}-{stats['max']:.{digits}f}]"


def _load(values: list[float] | None) -> str:
    return f"{values[0]:.2f}" if values else "?"


def run_tables(results: dict[str, Any]) -> list[Table]:
    config = results["config"]
    machine = results.get("machine", {})
    load = results.get("load_average", {})
    rows = [
        ["started", str(results.get("started", "?"))],
        ["sections", ", ".join(config.get("sections", [])) or "?"],
        ["CPU", f"{machine.get('Model name', '?')} ({machine.get('os.cpu_count', '?')} CPUs)"],
        ["threads / repeats", f"{config['threads']} / {config['repeats']}"],
        ["model", f"{config.get('model', '?')} (trained weights: {config.get('trained_weights', '?')})"],
        ["load average (1 min) start -> end", f"{_load(load.get('start'))} -> {_load(load.get('end'))}"],
        ["seconds", str(results.get("seconds", "?"))],
    ]
    return [Table("machine and run", ["run", "value"], rows)]


def peak_tables(results: dict[str, Any]) -> list[Table]:
    if "peak" not in results:
        return []
    peak = results["peak"]
    row = [
        str(peak["threads"]),
        str(peak.get("blas", "?")),
        f"{peak['peak_gflops']:.1f}",
        stats_text(peak["runs"], digits=1),
    ]
    columns = ["threads", "BLAS", "peak GFLOP/s", "runs: median [min-max]"]
    return [Table("SGEMM peak (numpy float32 matmul)", columns, [row])]


def engine_tables(results: dict[str, Any]) -> list[Table]:
    if "engines" not in results:
        return []
    engines = results["engines"]
    config = results["config"]
    shape = f" ({config['clips']} clips x {config['crops']} crops)" if "clips" in config else ""
    achieved = engines.get("achieved_gflops", {})
    times = Table(
        f"one request: {engines.get('rows', '?')} rows{shape}, ms: median [min-max]",
        ["candidate", "ms", "GFLOP/s"],
        [
            [name, stats_text(stats), f"{achieved[name]:.1f}" if name in achieved else ""]
            for name, stats in engines["times_ms"].items()
        ],
    )
    ratios = Table(
        "speed ratios, per interleaved round: median [min-max]",
        ["ratio", "speed"],
        [[name, stats_text(stats, "x", 2)] for name, stats in engines["ratios"].items()],
    )
    out = [times, ratios]
    if engines.get("gflop_per_request"):
        out.append(
            Table(
                "GFLOP per request (counted from the network)",
                ["part", "GFLOP"],
                [[name, f"{value:.2f}"] for name, value in engines["gflop_per_request"].items()],
            )
        )
    return out


def profile_tables(results: dict[str, Any]) -> list[Table]:
    if "profile" not in results:
        return []
    profile = results["profile"]
    rows = []
    for name in GRAPHS:
        row = profile.get(name)
        if row:
            ops = list(row["ms_per_run_by_op"].items())[:PROFILE_TOP_OPS]
            rows.append(
                [
                    name,
                    f"{row['kernel_ms_per_run']:.0f}",
                    f"{row['conv_ms_per_run']:.0f}",
                    f"{row['conv_gflops']:.1f}",
                    f"{row['conv_pct_of_peak']:.0f}%",
                    ", ".join(f"{op} {ms:.0f}" for op, ms in ops),
                ]
            )
    peak = f" ({profile['peak_gflops']:.1f} GFLOP/s)" if "peak_gflops" in profile else ""
    columns = ["graph", "kernel ms/run", "conv ms/run", "conv GFLOP/s", "of peak", "ms/run by op type"]
    return [Table(f"ONNX Runtime profile: convolutions vs SGEMM peak{peak}", columns, rows)]


def stage_tables(results: dict[str, Any]) -> list[Table]:
    if "stages" not in results:
        return []
    rows = [
        [
            f"{name} ({row['form']})" if "form" in row else name,
            *(stats_text(row.get(stage)) for stage in STAGES),
            f"{row['decode_share']:.0%}",
        ]
        for name, row in results["stages"].items()
        if isinstance(row, dict) and "total" in row
    ]
    title = "data plane per stage (10 s 320x240 clip), ms: median [min-max]"
    found = [Table(title, ["model", *STAGES, "decode share"], rows)]
    ratio = results["stages"].get("default_vs_exact_crops")
    if ratio:
        title = "served by default vs FSTCN_EXACT_CROPS=1, whole data plane, per interleaved round"
        found.append(
            Table(title, ["ratio", "speed"], [["default_vs_exact_crops", stats_text(ratio, "x", 2)]])
        )
    return found


def decode_tables(results: dict[str, Any]) -> list[Table]:
    if "decode" not in results:
        return []
    decode = results["decode"]
    rows = []
    for name, stats in decode["times_ms"].items():
        frames = decode.get("frames", {}).get(DECODE_FILES.get(name, ""), {})
        missing = "all" if name.endswith("every_frame") else "-"
        decoded, kept = frames.get("frames_decoded", missing), frames.get("frames_kept", missing)
        rows.append([name, stats_text(stats), str(decoded), str(kept)])
    rows.append(
        ["ratio long / short (keyframe every 10 s)", stats_text(decode["long_vs_short"], "x", 2), "", ""]
    )
    if "long_vs_short_gop50" in decode:
        ratio = stats_text(decode["long_vs_short_gop50"], "x", 2)
        rows.append(["ratio long / short (keyframe every 2 s)", ratio, "", ""])
    if "two_vs_one_decoder" in decode:
        ratio = stats_text(decode["two_vs_one_decoder"], "x", 2)
        rows.append(["speed of two decoders vs one (10-minute video)", ratio, "", ""])
    clips = results["config"].get("clips", "?")
    video = decode.get("video", "640x360 H.264")
    title = f"decode + sampling ({clips} clip pairs), {video}; ms: median [min-max]"
    return [Table(title, ["video", "ms", "frames decoded", "frames kept"], rows)]


def ort_tables(results: dict[str, Any]) -> list[Table]:
    graphs = [name for name in GRAPHS if name in results.get("ort", {})]
    if not graphs:
        return []
    ort = results["ort"]
    columns = ["session option"]
    for name in graphs:
        columns += [f"{name} ms", f"{name} speed"]
    rows = []
    for option in ort[graphs[0]]:
        cells = [option]
        for name in graphs:
            row = ort[name][option]
            cells += [stats_text(row["ms"]), stats_text(row["speed_vs_default"], "x", 2)]
        rows.append(cells)
    return [Table("ONNX Runtime session options: ms and speed vs default, median [min-max]", columns, rows)]


def http_tables(results: dict[str, Any]) -> list[Table]:
    if "http" not in results:
        return []
    rows = []
    for name, levels in results["http"].items():
        if not isinstance(levels, dict):
            continue
        for level, row in levels.items():
            if "p50_ms" in row:
                rows.append(
                    [
                        name,
                        str(level),
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
    columns = [
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
    ]
    found = [Table("POST /predict (10 s 320x240 25 fps H.264)", columns, rows)]
    ratios = results["http"].get("default_vs_exact_crops")
    if ratios:
        ratio_rows = [
            [level, f"{row['p50_speed']:.2f}x", f"{row['throughput_ratio']:.2f}x"]
            for level, row in ratios.items()
        ]
        title = "POST /predict: served by default vs FSTCN_EXACT_CROPS=1"
        found.append(Table(title, ["concurrency", "p50 speed-up", "throughput ratio"], ratio_rows))
    return found


def agreement_tables(results: dict[str, Any]) -> list[Table]:
    if "agreement" not in results:
        return []
    agreement = results["agreement"]
    rows = [
        [key, f"{value:.4f}" if isinstance(value, float) else str(value)]
        for key, value in agreement.items()
        if not isinstance(value, list | dict)  # the disagreeing videos, the load samples, the rechecks
    ]
    tables = [Table("top-1 agreement: shared trunk vs exact 18 crops", ["agreement", "value"], rows)]
    recheck_rows = [
        [
            name.removeprefix("recheck_"),
            margin,
            f"{row['rate']:.2%}",
            f"{row['top1_agreement']:.2%}",
            f"{row['accuracy']:.2%}",
            f"{row['speedup_vs_exact']:.2f}x" if "speedup_vs_exact" in row else "-",
        ]
        for name, by_margin in agreement.items()
        if name.startswith("recheck_")
        for margin, row in sorted(by_margin.items(), key=lambda item: float(item[0]))
    ]
    if recheck_rows:
        columns = [
            "graph",
            "recheck under lead",
            "videos rechecked",
            "top-1 agreement",
            "accuracy",
            "model time vs exact crops",
        ]
        tables.append(
            Table("with exact rechecks of close calls (service.pipeline.Recheck)", columns, recheck_rows)
        )
    return tables


def target_tables(results: dict[str, Any]) -> list[Table]:
    rows = [
        [
            row["target"],
            row["goal"],
            "-" if row["measured"] is None else f"{row['measured']:.3g}",
            str(row["met"]),
        ]
        for row in results.get("targets", [])
    ]
    return [Table("targets", ["target", "goal", "measured (median)", "met"], rows)]


SECTIONS: tuple[Callable[[dict[str, Any]], list[Table]], ...] = (
    run_tables,
    peak_tables,
    engine_tables,
    profile_tables,
    stage_tables,
    decode_tables,
    ort_tables,
    http_tables,
    agreement_tables,
    target_tables,
)


def tables(results: dict[str, Any]) -> list[Table]:
    """Every table of a (possibly partial) results dict of `fstcn.bench.runner.run`, in report order."""
    return [table for section in SECTIONS for table in section(results)]

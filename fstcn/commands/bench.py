"""`fstcn bench`: measure the service and its fast paths side by side on this machine (see bench/)."""

from __future__ import annotations

from pathlib import Path

import typer


def command(
    sections: str = typer.Option(
        "quick",
        "--sections",
        help="Comma list of peak, engines, profile, stages, decode, ort, http, agreement; "
        "or `quick` (peak, engines, stages, decode, http) or `all`.",
    ),
    repeats: int = typer.Option(
        5, "--repeats", min=1, help="Repetitions of every timing (medians reported)."
    ),
    threads: int = typer.Option(
        0, "--threads", min=0, help="ONNX Runtime / PyTorch / BLAS threads; 0 = cores."
    ),
    model: Path | None = typer.Option(
        None, "--model", help="Plain ONNX model (default models/fstcn-small.onnx, else a random `small`)."
    ),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="PyTorch checkpoint of the model (default: its NAME.pt twin)."
    ),
    concurrency: str = typer.Option("1,2,4,8", "--concurrency", help="HTTP concurrency levels."),
    requests_per_client: int = typer.Option(
        3, "--requests-per-client", min=1, help="HTTP requests per level = max(4, this x concurrency)."
    ),
    data: Path | None = typer.Option(
        None, "--data", help="Video folder for `agreement` (e.g. data/synth/test)."
    ),
    max_videos: int = typer.Option(
        0, "--max-videos", min=0, help="agreement: at most this many videos (0 = all)."
    ),
    cache: Path = typer.Option(Path(".cache/bench"), "--cache", help="Generated videos and exported graphs."),
    out: Path | None = typer.Option(None, "--out", help="Write the JSON results here (default: in --cache)."),
    write_fast_graphs: bool = typer.Option(
        False,
        "--write-fast-graphs",
        help="Only export NAME.frames.onnx and NAME.trunk.onnx beside --model (from --checkpoint) and exit.",
    ),
    share: str = typer.Option(
        "lower",
        "--share",
        help="--write-fast-graphs: how deep NAME.trunk.onnx shares the whole-frame computation: the lower "
        "SCL ('lower') or up to the branch convs ('branch', faster; docs/performance.md).",
    ),
) -> None:
    """Benchmark: per-stage timings, engines (ORT vs PyTorch, fast paths), SGEMM peak, decode, HTTP load.

    A quick run (default sections, --repeats 3) takes a few minutes on 2 cores; `--sections all` longer.
    Results: a table here and JSON (--out). See bench/RESULTS.md and docs/performance.md.
    """
    import logging
    import time

    from rich.console import Console

    from fstcn.bench.report import render
    from fstcn.bench.runner import QUICK_SECTIONS, SECTIONS, BenchConfig, run

    console = Console(stderr=True)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if write_fast_graphs:
        from fstcn.core.frames_graph import SHARE_DEPTHS
        from fstcn.model.export import export_bundle

        if model is None:
            raise typer.BadParameter("--write-fast-graphs needs --model")
        if share not in SHARE_DEPTHS:
            raise typer.BadParameter(f"--share must be 'lower' or 'branch', got {share!r}")
        bundle = export_bundle(
            checkpoint or model.with_suffix(".pt"), model, export_plain=False, fast_graphs=share
        )
        for mode, result in bundle.fast_graphs.items():
            console.print(f"{mode}: {result.onnx_path} (max |dp| {max(result.max_abs_diff.values()):.2g})")
        return
    chosen = {"quick": QUICK_SECTIONS, "all": SECTIONS}.get(sections) or tuple(
        name.strip() for name in sections.split(",") if name.strip()
    )
    try:
        levels = tuple(int(level) for level in concurrency.split(","))
        config = BenchConfig(
            sections=chosen,
            repeats=repeats,
            threads=threads,
            model=model,
            checkpoint=checkpoint,
            cache=cache,
            concurrency=levels,
            requests_per_client=requests_per_client,
            data=data,
            max_videos=max_videos,
            out=out or cache / f"results-{time.strftime('%Y%m%d-%H%M%S')}.json",
            progress=lambda message: console.log(message),
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    results = run(config)  # also writes config.out
    Console(width=170).print(render(results))
    console.print(f"results: {config.out}")

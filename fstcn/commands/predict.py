"""`fstcn predict FILE...`: the serving pipeline on local files, no server; JSON lines on stdout."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import NoReturn

import typer

from fstcn.commands import options as shared


def command(
    files: list[Path] = typer.Argument(
        ...,
        help="Video files, or folders: every video in them (recursively).",
        show_default=False,
        metavar="FILE",
    ),
    top_k: int | None = typer.Option(None, "--top-k", help="Classes per file (default 5)."),
    clips: int | None = typer.Option(None, "--clips", help="Clip pairs per video (default: the model's)."),
    crops: int = typer.Option(18, "--crops", help="Test-time crops: 1, 2, 9 or 18."),
    fusion: str = typer.Option("sci", "--fusion", help="Score fusion: sci or mean."),
    model: shared.ServedModel = None,
    providers: str | None = typer.Option(None, "--providers", help="auto or tensorrt,cuda,cpu."),
) -> None:
    """Predict the action in local video files with the serving pipeline (no server).

    Prints one JSON line per file on stdout: {"file": ...} plus the body POST /predict would return, or
    {"file": ..., "error": {"code", "message"}}. A progress bar goes to stderr for several files. Exits 1
    when any file failed, 2 on bad options or settings.
    """
    from tqdm import tqdm

    from fstcn.core.errors import FstcnError
    from fstcn.core.options import PredictOptions
    from fstcn.service.engine import ModelLoadError
    from fstcn.service.loading import engine_from_settings, thread_split, video_limits
    from fstcn.service.log import configure_logging
    from fstcn.service.pipeline import Pipeline
    from fstcn.service.schemas import PredictResponse
    from fstcn.service.settings import SettingsError, load_settings, unknown_variables

    overrides = shared.served_model_overrides(model)
    if providers is not None:
        overrides["providers"] = providers
    try:
        settings = load_settings(**overrides)
    except SettingsError as error:
        _fail(str(error), code=2)
    configure_logging("warning" if settings.log_level == "info" else settings.log_level, settings.log_format)
    for warning in unknown_variables():
        logging.getLogger("fstcn.predict").warning("%s", warning)
    try:
        engine = engine_from_settings(settings)
    except ModelLoadError as error:
        _fail(str(error), code=1)
    pipeline = Pipeline(engine, limits=video_limits(settings), decode_threads=thread_split(settings).decode)
    options = PredictOptions(top_k=top_k, clips=clips, crops=crops, fusion=fusion)
    try:
        options = pipeline.resolve(options)
    except FstcnError as error:
        _fail(error.message, code=2)

    files = _expand_folders(files)
    failures = 0
    bar = tqdm(files, desc="predict", unit="video", file=sys.stderr, disable=len(files) < 2)
    for path in bar:
        start = time.perf_counter()
        record: dict[str, object] = {"file": str(path)}
        try:
            if path.is_dir():
                raise FileNotFoundError(f"{path} is a folder without video files")
            if not path.is_file():
                raise FileNotFoundError(f"no such file: {path}")
            prediction = pipeline.predict_file(path, options)
            body = PredictResponse.from_prediction(prediction, engine, time.perf_counter() - start)
            record.update(body.model_dump(mode="json"))
        except FstcnError as error:
            failures += 1
            record["error"] = {"code": error.code, "message": error.message}
        except OSError as error:
            failures += 1
            record["error"] = {"code": "not_found", "message": str(error)}
        line = json.dumps(record)
        if bar.disable:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        else:
            bar.write(line, file=sys.stdout)
    engine.close()
    if failures:
        raise typer.Exit(1)


def _fail(message: str, *, code: int) -> NoReturn:
    sys.stderr.write(f"fstcn predict: {message}\n")
    raise typer.Exit(code)


def _expand_folders(paths: list[Path]) -> list[Path]:
    """Each folder replaced by the video files under it, sorted; a folder without any stays, to fail."""
    from fstcn.model.datasets import VIDEO_EXTENSIONS

    expanded: list[Path] = []
    for path in paths:
        videos = []
        if path.is_dir():
            videos = sorted(
                found
                for found in path.rglob("*")
                if found.is_file()
                and found.suffix.lower() in VIDEO_EXTENSIONS
                and not found.name.startswith(".")
            )
        expanded.extend(videos or [path])
    return expanded

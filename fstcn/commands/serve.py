"""`fstcn serve`: the HTTP inference service under uvicorn (settings from FSTCN_* variables)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
from typing import NoReturn

import typer

from fstcn.commands import options


def command(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (0.0.0.0 for all)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes, each with its own model."),
    model: options.ServedModel = None,
) -> None:
    """Serve the model over HTTP: POST /predict, /healthz, /readyz, /v1/model, /metrics.

    Configuration comes from FSTCN_* environment variables (see docs/serving.md); --model overrides
    FSTCN_MODEL_PATH. With neither it serves the shipped default model on the best available execution
    provider. FSTCN_* variables that are not settings (compose's among them) get a warning.

    SIGTERM or Ctrl-C stops accepting requests, lets in-flight ones finish (up to the request timeout),
    and exits 0.
    """
    import uvicorn

    from fstcn.service.app import create_app
    from fstcn.service.engine import ModelLoadError
    from fstcn.service.loading import check_model_files, engine_from_settings, recheck_from_settings
    from fstcn.service.log import configure_logging, uvicorn_log_config
    from fstcn.service.settings import ENV_PREFIX, SettingsError, load_settings, unknown_variables

    overrides = options.served_model_overrides(model)
    try:
        settings = load_settings(**overrides)
    except SettingsError as error:
        _fail(str(error), code=2)
    if model is not None:  # the workers of --workers N read their settings from the environment
        os.environ[f"{ENV_PREFIX}MODEL_PATH"] = str(model)
    configure_logging(settings.log_level, settings.log_format)
    for warning in unknown_variables():
        logging.getLogger("fstcn.serve").warning("%s", warning)
    common = {
        "host": host,
        "port": port,
        "log_config": uvicorn_log_config(settings.log_level, settings.log_format),
        "timeout_graceful_shutdown": int(settings.request_timeout_s) + 5,
        "proxy_headers": True,
        "server_header": False,
    }
    if workers == 1:
        try:  # load here, so a bad model is one clear line and a non-zero exit, not a lifespan traceback
            engine = engine_from_settings(settings)
            recheck = recheck_from_settings(settings, engine)
        except ModelLoadError as error:
            _fail(str(error), code=1)
        app = create_app(settings, engine=engine, recheck=recheck)
        server = uvicorn.Server(uvicorn.Config(app, **common))  # type: ignore[arg-type]
        _exit_zero_after_graceful_shutdown()
        server.run()
        if not server.started:
            _fail("the server did not start (see the log above)", code=3)
        return

    try:  # check the files once before the workers each load them
        check_model_files(settings)
    except ModelLoadError as error:
        _fail(str(error), code=1)
    own_dir = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    if own_dir:  # aggregate /metrics over the workers
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="fstcn-metrics-")
    _exit_zero_after_graceful_shutdown()
    try:
        uvicorn.run("fstcn.service.app:create_app", factory=True, workers=workers, **common)  # type: ignore[arg-type]
    finally:
        if own_dir:
            shutil.rmtree(os.environ.pop("PROMETHEUS_MULTIPROC_DIR"), ignore_errors=True)


def _exit_zero_after_graceful_shutdown() -> None:
    """uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; a no-op handler makes that exit 0."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: None)


def _fail(message: str, *, code: int) -> NoReturn:
    sys.stderr.write(f"fstcn serve: {message}\n")
    raise typer.Exit(code)

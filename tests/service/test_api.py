"""The HTTP API end to end with the fake model and generated videos.

Real HTTP against a `fstcn serve` subprocess for the video formats and hostile inputs; uvicorn on a
thread where a test needs to reach in-process objects (a gated engine for overload and timeouts);
TestClient for parameter validation, readiness, API keys and error shapes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest

from fstcn.service.app import create_app
from fstcn.service.engine import CPU, Engine
from fstcn.service.schemas import PredictResponse
from fstcn.service.settings import Settings
from tests.service import hostile_media
from tests.service.fake_model import FAKE_LABELS, FAKE_META
from tests.service.servers import (
    ServerProcess,
    TestClient,
    live_app,
    open_client,
    serve_process,
    temp_uploads,
)

SMALL = {"width": 160, "height": 120}


def check_prediction(
    body: dict[str, Any],
    *,
    top_k: int = 5,
    clips: int = FAKE_META.sampling.num_clips,
    fusion: str = "sci",
    width: int | None = None,
    height: int | None = None,
    fps: float | None = None,
) -> PredictResponse:
    """Validate a 200 body against the schema and the semantics of the crops, the fusion and the API."""
    response = PredictResponse.model_validate(body)
    assert response.model.name == FAKE_META.name and response.model.preset == FAKE_META.preset
    assert response.fusion == fusion
    predictions = response.predictions
    assert len(predictions) == top_k
    assert len({p.index for p in predictions}) == top_k
    assert all(p.label == FAKE_LABELS[p.index] for p in predictions)
    scores = [p.score for p in predictions]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 + 1e-6 for s in scores)
    assert len(response.clips) == clips
    starts = [c.start_s for c in response.clips]
    assert starts == sorted(starts) and starts[0] == 0.0
    for clip in response.clips:
        assert clip.start_s <= clip.end_s <= response.video.duration_s + 1e-6
        assert clip.label in FAKE_LABELS and 0.0 <= clip.sci <= 1.0 + 1e-6 and 0.0 < clip.score <= 1.0 + 1e-6
    if fusion == "sci":  # video score = max over clips of the clip scores (SCI fusion)
        assert predictions[0].score == pytest.approx(max(c.score for c in response.clips))
    video = response.video
    assert video.frames >= 2 and video.duration_s > 0 and video.codec
    if width is not None:
        assert (video.width, video.height) == (width, height)
    if fps is not None:
        assert video.fps == pytest.approx(fps, rel=0.05)
    timing = response.timing_ms
    assert timing.decode > 0 and timing.infer > 0 and timing.total >= timing.decode + timing.infer
    return response


def post_video(http: httpx.Client | TestClient, data: bytes, name: str = "video.mp4", **params: Any) -> Any:
    return http.post("/predict", params=params, files={"file": (name, data, "application/octet-stream")})


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code and body["error"]["message"]


# ------------------------------------------------------------------- real HTTP, real process
@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


VIDEO_CASES = {
    "mp4-h264-25fps": ("v.mp4", {"fps": 25}),
    "webm-vp9": ("v.webm", {"fps": 25, "seconds": 1.6}),
    "avi-mpeg4": ("v.avi", {"fps": 25}),
    "mkv-h264": ("v.mkv", {"fps": 25}),
    "mp4-15fps": ("v.mp4", {"fps": 15}),
    "mp4-30fps": ("v.mp4", {"fps": 30}),
    "mp4-60fps": ("v.mp4", {"fps": 60}),
}


@pytest.mark.parametrize("case", list(VIDEO_CASES))
def test_video_formats_and_frame_rates(
    case: str, http: httpx.Client, video_factory: Callable[..., Path]
) -> None:
    name, kwargs = VIDEO_CASES[case]
    path = video_factory(f"{case}-{name}", seconds=kwargs.pop("seconds", 2.0), **kwargs, **SMALL)
    response = post_video(http, path.read_bytes(), name)
    assert response.status_code == 200, response.text
    check_prediction(response.json(), width=160, height=120, fps=kwargs["fps"])


def test_variable_frame_rate_video(http: httpx.Client, video_factory: Callable[..., Path]) -> None:
    rng = np.random.default_rng(3)
    times = np.cumsum(rng.uniform(0.02, 0.07, size=60)).round(3).tolist()
    path = video_factory("vfr.mkv", frame_times=[0.0, *times], **SMALL)
    response = post_video(http, path.read_bytes(), "vfr.mkv", clips=3, crops=2, top_k=2)
    assert response.status_code == 200, response.text
    check_prediction(response.json(), clips=3, top_k=2)


def test_query_parameters_change_the_work_done(
    http: httpx.Client, video_factory: Callable[..., Path]
) -> None:
    data = video_factory("params.mp4", **SMALL).read_bytes()
    for params in (
        {"top_k": 6, "clips": 1, "crops": 1, "fusion": "mean"},
        {"clips": 32, "crops": 9, "top_k": 1},
    ):
        response = post_video(http, data, **params)
        assert response.status_code == 200, response.text
        check_prediction(
            response.json(), top_k=params["top_k"], clips=params["clips"], fusion=params.get("fusion", "sci")
        )
    body = post_video(http, data, top_k=6, fusion="mean").json()
    assert sum(p["score"] for p in body["predictions"]) == pytest.approx(1.0, abs=1e-4)  # mean of softmaxes


def audio_only(path: Path) -> bytes:
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        for _ in range(16):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.read_bytes()


def hostile_case(name: str, video_factory: Callable[..., Path], tmp_path: Path) -> bytes:
    if name == "empty":
        return b""
    if name == "random-bytes":
        return np.random.default_rng(1).bytes(20_000)
    if name == "text":
        return b"this is not a video\n" * 200
    if name == "png":
        return hostile_media.png_bytes(64, 48)
    if name == "audio-only":
        return audio_only(tmp_path / "audio.mp4")
    if name == "truncated-mp4":
        good = video_factory("hostile-good.mp4", **SMALL)
        return hostile_media.truncated_copy(good, tmp_path / "cut.mp4", 0.4).read_bytes()
    if name == "one-frame":
        return video_factory("one-frame.mp4", fps=25, seconds=0.04, **SMALL).read_bytes()
    if name == "oversize":
        return np.random.default_rng(2).bytes(3 * 1024 * 1024)  # the server's limit is 2 MiB
    if name == "hls-playlist":
        return hostile_media.hls_playlist(str(video_factory("hostile-good.mp4", **SMALL)))
    raise AssertionError(name)


HOSTILE = {
    "empty": (415, "unsupported_media"),
    "random-bytes": (415, "unsupported_media"),
    "text": (415, "unsupported_media"),
    "png": (415, "unsupported_media"),
    "audio-only": (415, "unsupported_media"),
    "truncated-mp4": (422, "invalid_video"),
    "one-frame": (422, "video_too_short"),
    "oversize": (413, "video_too_large"),
    "hls-playlist": (415, "unsupported_media"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_bad_uploads_get_their_code_and_the_server_keeps_serving(
    name: str, http: httpx.Client, server: ServerProcess, video_factory: Callable[..., Path], tmp_path: Path
) -> None:
    status, code = HOSTILE[name]
    try:
        response = post_video(http, hostile_case(name, video_factory, tmp_path), f"{name}.mp4")
    except httpx.TransportError:  # pragma: no cover - only the oversize upload may be cut mid-send
        assert name == "oversize"
    else:
        assert_error(response, status, code)
        assert "fstcn-upload" not in response.text  # no server paths in messages
    assert server.process.poll() is None
    assert http.get("/healthz").status_code == 200
    good = post_video(http, video_factory("after.mp4", **SMALL).read_bytes())
    assert good.status_code == 200
    assert temp_uploads(server.tmpdir) == []


def test_hls_playlist_pointing_at_a_local_file_reads_nothing(http: httpx.Client, tmp_path: Path) -> None:
    canary = hostile_media.FifoCanary(tmp_path / "canary.ts")
    try:
        for body in (
            hostile_media.hls_playlist(str(canary.path)),
            hostile_media.ffconcat_script(str(canary.path)),
        ):
            response = post_video(http, body, "playlist.mp4")
            assert response.status_code in (415, 422), response.text
            assert "CANARY" not in response.text
    finally:
        assert not canary.release(), "the server opened a file named by an uploaded playlist"


def test_request_shapes_that_are_not_uploads(http: httpx.Client) -> None:
    assert_error(http.post("/predict", content=b"raw body"), 422, "invalid_parameter")
    assert_error(http.post("/predict", files={"other": ("x", b"1")}), 422, "invalid_parameter")
    assert_error(http.get("/nowhere"), 404, "not_found")
    response = http.get("/predict")
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"


# ---------------------------------------------------------------------- in-process client
@pytest.mark.parametrize(
    "query",
    [
        "top_k=0",
        "top_k=7",  # the fake model has 6 classes
        "top_k=abc",
        "clips=0",
        "clips=33",
        "crops=3",
        "crops=nine",
        "fusion=max",
    ],
)
def test_invalid_parameters(query: str, client: TestClient, video_factory: Callable[..., Path]) -> None:
    response = client.post(f"/predict?{query}", files={"file": ("v.mp4", b"\x00" * 10)})
    assert_error(response, 422, "invalid_parameter")
    assert query.split("=")[0] in response.json()["error"]["message"]


def test_default_top_k_is_capped_to_the_number_of_classes(
    make_settings: Callable[..., Settings], tmp_path: Path, video_factory: Callable[..., Path]
) -> None:
    from tests.service.fake_model import fake_meta, write_fake_model

    model = write_fake_model(tmp_path / "three.onnx", fake_meta(labels=("a", "b", "c")))
    with open_client(create_app(make_settings(model_path=model))) as client:
        body = post_video(client, video_factory("cap.mp4", **SMALL).read_bytes(), crops=1).json()
    assert [p["label"] for p in body["predictions"]] != [] and len(body["predictions"]) == 3


def test_model_endpoint(client: TestClient) -> None:
    body = client.get("/v1/model").json()
    assert body["labels"] == list(FAKE_LABELS) and body["num_classes"] == len(FAKE_LABELS)
    assert body["preset"] == "tiny" and body["name"] == FAKE_META.name
    assert body["sampling"] == {
        "clip_length": 5,
        "stride": 5,
        "diff_offset": 9,
        "num_clips": 5,
        "ref_fps": 25.0,
    }
    assert body["input"]["crop_size"] == 32 and body["input"]["resize_short"] == 40
    assert body["input"]["motion_shape"] == ["B", 5, 3, 32, 32]
    assert body["input"]["graph_inputs"] == [
        {"name": "appearance", "element_type": "float32", "shape": ["B", 3, 32, 32]},
        {"name": "motion", "element_type": "float32", "shape": ["B", 5, 3, 32, 32]},
    ]
    assert body["form"] == "plain" and body["providers"] == [CPU] and body["batching"] is False


def test_model_endpoint_reports_the_batching_in_effect(make_settings: Callable[..., Settings]) -> None:
    with open_client(create_app(make_settings(batching=True))) as client:
        assert client.get("/v1/model").json()["batching"] is True


def test_health_endpoints(client: TestClient) -> None:
    for path in ("/healthz", "/v2/health/live"):
        assert client.get(path).json() == {"status": "ok"}
    for path in ("/readyz", "/v2/health/ready"):
        assert client.get(path).json() == {"status": "ready"}


class GatedEngine:
    """Wraps an engine's warm-up and inference behind events the test controls."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.warm_gate = threading.Event()
        self.infer_gate = threading.Event()
        self.infer_gate.set()
        self.fail_with: Exception | None = None
        warm_up, run = engine.warm_up, engine.run

        def gated_warm_up() -> None:
            self.warm_gate.wait(30)
            warm_up()

        def gated_run(feeds: dict[str, np.ndarray]) -> np.ndarray:
            self.infer_gate.wait(30)
            if self.fail_with is not None:
                raise self.fail_with
            return run(feeds)

        engine.warm_up = gated_warm_up  # type: ignore[method-assign]
        engine.run = gated_run  # type: ignore[method-assign]


@pytest.fixture
def gated(fake_model_path: Path) -> GatedEngine:
    return GatedEngine(Engine.load(fake_model_path, providers=[CPU]))


def test_not_ready_until_warmed_up(
    gated: GatedEngine, make_settings: Callable[..., Settings], video_factory: Callable[..., Path]
) -> None:
    app = create_app(make_settings(), engine=gated.engine)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/healthz").status_code == 200
        for path in ("/readyz", "/v2/health/ready"):
            response = client.get(path)
            assert_error(response, 503, "not_ready")
        response = post_video(client, video_factory("early.mp4", **SMALL).read_bytes())
        assert_error(response, 503, "overloaded")
        assert response.headers["retry-after"]
        gated.warm_gate.set()
        deadline = time.monotonic() + 10
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert post_video(client, video_factory("early.mp4", **SMALL).read_bytes()).status_code == 200


def test_api_key(make_settings: Callable[..., Settings], video_factory: Callable[..., Path]) -> None:
    data = video_factory("key.mp4", **SMALL).read_bytes()
    with open_client(create_app(make_settings(api_key="s3cret"))) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "s3cre"}):
            response = client.post("/predict", headers=headers, files={"file": ("v.mp4", data)})
            assert_error(response, 401, "unauthorized")
            assert response.headers["www-authenticate"] == "Bearer"
            assert_error(client.get("/v1/model", headers=headers), 401, "unauthorized")
        for headers in ({"Authorization": "Bearer s3cret"}, {"X-API-Key": "s3cret"}):
            assert (
                client.post("/predict", headers=headers, files={"file": ("v.mp4", data)}).status_code == 200
            )
            assert client.get("/v1/model", headers=headers).status_code == 200
        for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/metrics"):
            assert client.get(path).status_code == 200, path
    with open_client(create_app(make_settings(api_key="s3cret", metrics_require_key=True))) as client:
        assert_error(client.get("/metrics"), 401, "unauthorized")
        assert client.get("/metrics", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.get("/healthz").status_code == 200


def test_unexpected_failure_is_500_without_internals_and_the_server_recovers(
    gated: GatedEngine, make_settings: Callable[..., Settings], video_factory: Callable[..., Path]
) -> None:
    gated.warm_gate.set()
    data = video_factory("fault.mp4", **SMALL).read_bytes()
    with open_client(create_app(make_settings(), engine=gated.engine)) as client:
        gated.fail_with = RuntimeError("secret internal detail /opt/model")
        response = post_video(client, data)
        assert_error(response, 500, "internal")
        assert "secret" not in response.text and "RuntimeError" not in response.text
        gated.fail_with = None
        assert post_video(client, data).status_code == 200


# --------------------------------------------------------------- uvicorn on a thread (gated)
def test_overload_gets_503_with_retry_after(
    gated: GatedEngine,
    make_settings: Callable[..., Settings],
    video_factory: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    gated.warm_gate.set()
    gated.infer_gate.clear()
    data = video_factory("load.mp4", **SMALL).read_bytes()
    app = create_app(
        make_settings(max_concurrent_inferences=1, queue_size=1, retry_after_s=2), engine=gated.engine
    )

    async def scenario(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            admitted = [
                asyncio.create_task(client.post("/predict", files={"file": ("v.mp4", data)}))
                for _ in range(2)
            ]
            limiter = app.state.pipeline.limiter
            deadline = time.monotonic() + 10
            while (limiter.running, limiter.waiting) != (1, 1):  # one running (gated), one queued
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            refused = [await client.post("/predict", files={"file": ("v.mp4", data)}) for _ in range(3)]
            gated.infer_gate.set()
            return [*await asyncio.gather(*admitted), *refused]

    with live_app(app) as url:
        responses = asyncio.run(scenario(url))
        assert [r.status_code for r in responses] == [200, 200, 503, 503, 503]
        for response in responses[2:]:
            assert_error(response, 503, "overloaded")
            assert response.headers["retry-after"] == "2"
        metrics = httpx.get(f"{url}/metrics").text
        assert 'fstcn_errors_total{code="overloaded"}' in metrics
    assert temp_uploads(tmp_path) == []


def test_timeout_gets_504_and_abandoned_work_keeps_its_slot(
    gated: GatedEngine,
    make_settings: Callable[..., Settings],
    video_factory: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    gated.warm_gate.set()
    gated.infer_gate.clear()
    data = video_factory("slow.mp4", **SMALL).read_bytes()
    app = create_app(
        make_settings(request_timeout_s=2.0, max_concurrent_inferences=1, queue_size=0), engine=gated.engine
    )
    with live_app(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        start = time.monotonic()
        response = post_video(client, data)
        assert_error(response, 504, "timeout")
        assert time.monotonic() - start < 6  # the 2 s limit leaves the final request room on a busy machine
        # the inference thread is still blocked: its slot is still taken, so the next request is refused
        assert app.state.pipeline.limiter.running == 1
        assert_error(post_video(client, data), 503, "overloaded")
        gated.infer_gate.set()
        deadline = time.monotonic() + 10
        while app.state.pipeline.limiter.running:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert post_video(client, data).status_code == 200
    assert temp_uploads(tmp_path) == []


def test_a_trickling_upload_is_cut_at_the_timeout_while_others_are_served(
    make_settings: Callable[..., Settings], video_factory: Callable[..., Path]
) -> None:
    data = video_factory("fast.mp4", **SMALL).read_bytes()
    app = create_app(make_settings(request_timeout_s=1.0))

    async def trickle(port: int) -> tuple[bytes, float]:
        """A raw HTTP client that sends a multipart upload 100 bytes every 0.1 s; returns the status line."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        boundary = "trickle"
        writer.write(
            b"POST /predict HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n"
            + f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n".encode()
        )
        start = time.monotonic()

        async def send() -> None:
            head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="v.mp4"\r\n\r\n'
            chunks = [head.encode(), *([b"\x00" * 100] * 100)]
            for chunk in chunks:
                writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                await writer.drain()
                await asyncio.sleep(0.1)

        sender = asyncio.create_task(send())
        try:
            status_line = await asyncio.wait_for(reader.readline(), 8)
        finally:
            sender.cancel()
            writer.close()
        return status_line, time.monotonic() - start

    async def scenario(url: str) -> tuple[bytes, float, list[int]]:
        port = int(url.rsplit(":", 1)[1])
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            slow = asyncio.create_task(trickle(port))
            others = [
                (await client.post("/predict", files={"file": ("v.mp4", data)})).status_code for _ in range(2)
            ]
            status_line, elapsed = await slow
            return status_line, elapsed, others

    with live_app(app) as url:
        status_line, elapsed, others = asyncio.run(scenario(url))
    assert others == [200, 200]
    assert status_line.startswith(b"HTTP/1.1 504"), status_line
    assert elapsed < 3.0  # cut at the 1 s limit, long before the 10 s upload would end


def test_sigterm_finishes_in_flight_requests_and_exits_zero(
    fake_model_path: Path, video_factory: Callable[..., Path], tmp_path: Path
) -> None:
    import signal

    data = video_factory("sigterm.mp4", seconds=2.0, width=320, height=240).read_bytes()
    with serve_process(fake_model_path, tmp_path) as server:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            results: list[int] = []
            sender = threading.Thread(
                target=lambda: results.append(post_video(http, data, clips=32).status_code)
            )
            sender.start()
            deadline = time.monotonic() + 10
            while "fstcn_inflight_requests 1.0" not in http.get("/metrics").text:  # the request is in flight
                assert time.monotonic() < deadline and sender.is_alive()
            server.process.send_signal(signal.SIGTERM)
            sender.join(30)
            assert results == [200]
        assert server.process.wait(30) == 0, server.log()
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{server.url}/healthz", timeout=2)

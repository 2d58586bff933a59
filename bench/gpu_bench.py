"""GPU benchmark of the `paper` preset (run by bench/gpu.sh): videos/s at 5 clips x 18 crops in fp32,
fp16 and bf16 with PyTorch (CUDA), the share of a video's time spent decoding vs inferring, and ONNX
Runtime's CUDA provider where onnxruntime-gpu is installed.

Made for a GPU machine that has PyTorch with CUDA but not necessarily the project's other dependencies:
it runs from a checkout without installation (bench/gpu.sh links the `fstcn` namespace together),
decodes with the project's PyAV decoder when `av` is importable and with OpenCV otherwise (said in the
output), and falls back to the CPU when there is no GPU (use `--preset tiny` there to check the script
itself). Weights are random: speed does not depend on them. Every step checks the time budget and the
JSON is written as it goes.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

CLIPS, CROPS = 5, 18


def _median_time(fn: Any, iters: int, sync: Any) -> tuple[float, list[float]]:
    fn()
    sync()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def _decoder(resize_short: int) -> tuple[str, Any]:
    """(name, decode(path, times) -> (frames uint8 (F, h, w, 3), times (F,))) with PyAV or OpenCV."""
    try:
        from fstcn.core.video.decode import decode_video

        def decode_av(path: Path, times: Any) -> tuple[Any, Any]:
            video = decode_video(path, resize_short=resize_short, times=times)
            return video.frames, video.times

        return "pyav (fstcn.core.video.decode)", decode_av
    except ImportError:
        import cv2

        from fstcn.core.clips import nearest_frame_indices, resized_size

        def decode_cv2(path: Path, times: Any) -> tuple[Any, Any]:
            capture = cv2.VideoCapture(str(path))
            fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
            wanted = set(nearest_frame_indices(np.arange(100_000) / fps, times).ravel().tolist())
            frames, stamps, index = [], [], 0
            while index <= max(wanted):
                ok, frame = capture.read()
                if not ok:
                    break
                if index in wanted:
                    h, w = resized_size(frame.shape[0], frame.shape[1], resize_short)
                    rgb = cv2.cvtColor(
                        cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB
                    )
                    frames.append(rgb)
                    stamps.append(index / fps)
                index += 1
            capture.release()
            return np.stack(frames), np.asarray(stamps)

        return "opencv (fallback: PyAV not installed)", decode_cv2


def _video(path: Path | None, work: Path) -> Path:
    if path is not None:
        return path
    cached = Path(".cache/bench/videos/clip_10s_320x240.mp4")
    if cached.is_file():
        return cached
    target = work / "clip.mp4"
    try:
        from fstcn.bench.media import write_bench_video

        return write_bench_video(target, 10.0, 320, 240)
    except ImportError:
        import cv2

        writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (320, 240))
        for index in range(250):
            frame = np.zeros((240, 320, 3), np.uint8)
            frame[(index * 3) % 180 : (index * 3) % 180 + 60, (index * 7) % 260 : (index * 7) % 260 + 60] = (
                64,
                (index * 11) % 256,
                255,
            )
            writer.write(frame)
        writer.release()
        return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--iters", type=int, default=10, help="timed iterations per measurement")
    parser.add_argument("--budget-s", type=float, default=420.0, help="stop starting new steps after this")
    parser.add_argument("--video", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("gpu-bench.json"))
    parser.add_argument("--skip-onnx", action="store_true")
    parser.add_argument("--skip-torch", action="store_true", help="leave out the PyTorch fp32/bf16/fp16 step")
    parser.add_argument("--skip-pipeline", action="store_true", help="leave out the service pipeline step")
    parser.add_argument(
        "--onnx-on-cpu", action="store_true", help="run the ONNX Runtime step without a CUDA provider too"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    import torch

    from fstcn.core.clips import gather_clip_pairs, network_inputs, plan_clip_pairs
    from fstcn.model.network import fstcn
    from fstcn.model.train import make_meta

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    torch.backends.cudnn.benchmark = True
    results: dict[str, Any] = {
        "preset": args.preset,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu (no CUDA device: fallback run)",
        "torch": torch.__version__,
        "clips": CLIPS,
        "crops": CROPS,
    }

    def save() -> None:
        args.out.write_text(json.dumps(results, indent=2) + "\n")

    def budget_left() -> bool:
        return time.monotonic() - started < args.budget_s

    network = fstcn(preset=args.preset, num_classes=101).eval().to(device)
    config = network.config
    labels = [f"c{i}" for i in range(101)]
    meta = replace(make_meta(config, args.preset, labels), name="gpu-bench", version="random")
    with tempfile.TemporaryDirectory() as tmp:
        video = _video(args.video, Path(tmp))
        decoder_name, decode = _decoder(config.resize_short)
        results["decoder"] = decoder_name
        results["video"] = str(video)
        # host side of one video: decode the sampled frames, then crops and normalisation (numpy)
        plan = plan_clip_pairs(0.0, 9.96, config.sampling, CLIPS)
        host: dict[str, list[float]] = {"decode": [], "preprocess": []}
        for _ in range(3):
            start = time.perf_counter()
            frames, times = decode(video, plan.all_times())
            host["decode"].append(time.perf_counter() - start)
            start = time.perf_counter()
            appearance, motion = gather_clip_pairs(frames, times, plan)
            app, mot = network_inputs(appearance, motion, meta, CROPS)
            host["preprocess"].append(time.perf_counter() - start)
        results["host_ms"] = {key: 1000 * statistics.median(values) for key, values in host.items()}
        save()
        print(f"device {results['device']}, decoder {decoder_name}, host ms {results['host_ms']}", flush=True)

        dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
        if cuda:
            dtypes["fp16"] = torch.float16
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        results["torch"] = {}
        for name, dtype in dtypes.items():
            if args.skip_torch:
                results["torch"][name] = "skipped: --skip-torch"
                continue
            if not budget_left():
                results["torch"][name] = "skipped: time budget"
                continue
            model = network.to(dtype)
            app_d = torch.from_numpy(app).to(device, dtype)
            mot_d = torch.from_numpy(mot).to(device, dtype)

            def infer(model: Any = model, app_d: Any = app_d, mot_d: Any = mot_d) -> None:
                with torch.inference_mode():
                    torch.softmax(model(app_d, mot_d).float(), dim=1)

            seconds, all_times = _median_time(infer, args.iters, sync)

            # end to end, one video at a time: decode + preprocess + host-to-device copy + inference
            def end_to_end(model: Any = model, dtype: Any = dtype) -> None:
                frames, times = decode(video, plan.all_times())
                appearance, motion = gather_clip_pairs(frames, times, plan)
                a, m = network_inputs(appearance, motion, meta, CROPS)
                with torch.inference_mode():
                    out = model(torch.from_numpy(a).to(device, dtype), torch.from_numpy(m).to(device, dtype))
                    out.float().cpu()

            e2e, _ = _median_time(end_to_end, max(2, args.iters // 3), sync)
            decode_s = results["host_ms"]["decode"] / 1000
            results["torch"][name] = {
                "infer_ms": 1000 * seconds,
                "infer_ms_all": [1000 * t for t in all_times],
                "videos_per_s_model_only": 1.0 / seconds,
                "end_to_end_ms": 1000 * e2e,
                "videos_per_s_end_to_end": 1.0 / e2e,
                "decode_share_end_to_end": decode_s / e2e,
                "infer_share_end_to_end": seconds / e2e,
            }
            save()
            print(
                f"torch {name}: {results['torch'][name]['videos_per_s_model_only']:.1f} videos/s model only, "
                f"{1 / e2e:.2f} end to end (decode {100 * decode_s / e2e:.0f}%)",
                flush=True,
            )
        network.float()

        results["onnxruntime"] = _onnxruntime(network, meta, video, args, budget_left, Path(tmp))
        save()
        if isinstance(results["onnxruntime"], dict) and not args.skip_pipeline:
            plain = _preset_graph_path(Path(tmp), args.preset, "fp32")  # written by the step above
            results["service_pipeline"] = _service_pipeline(plain, video, args, budget_left, save)
            save()
    results["seconds"] = time.monotonic() - started
    save()
    print(json.dumps({k: v for k, v in results.items() if k != "torch"}, indent=1), flush=True)
    return 0


def _onnxruntime(network: Any, meta: Any, video: Path, args: Any, budget_left: Any, tmp: Path) -> Any:
    """The service's engine (`fstcn.service.engine.Engine`, auto providers) on the preset's fp32 and fp16
    graphs and on the shipped model: provider in use and inference time for 1, 2 and 4 videos per run,
    each graph fed what `engine.prepare` builds from `video` decoded at its own input size."""
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime not installed"
    if args.skip_onnx:
        return "skipped"
    if "CUDAExecutionProvider" not in ort.get_available_providers() and not args.onnx_on_cpu:
        return f"onnxruntime {ort.__version__} without CUDAExecutionProvider (onnxruntime-gpu not installed)"
    from fstcn.model.export.plain import onnx_graph
    from fstcn.service.engine import Engine

    cpu_network = network.cpu().float()
    graphs = {}
    for precision in ("fp32", "fp16"):
        path = _preset_graph_path(tmp, args.preset, precision)
        path.write_bytes(onnx_graph(cpu_network, replace(meta, precision=precision)).SerializeToString())
        graphs[f"{args.preset} {precision}"] = path
    shipped = _shipped_model()
    if shipped is not None:
        graphs["shipped fstcn-small fp32"] = shipped
    results: dict[str, Any] = {"onnxruntime": ort.__version__}
    for name, path in graphs.items():
        if not budget_left():
            results[name] = "skipped: time budget"
            continue
        start = time.perf_counter()
        engine = Engine.load(path)
        engine.warm_up()
        entry: dict[str, Any] = {
            "providers": engine.providers,
            "load_and_warm_up_s": time.perf_counter() - start,
        }
        feeds = _video_feeds(engine, video)
        for videos in (1, 2, 4):
            # a plain graph's feeds are rows (clip pair x crop) along axis 0: N videos = N x the rows
            batch = {key: np.concatenate([array] * videos) for key, array in feeds.items()}
            run = functools.partial(engine.run, batch)
            seconds, _ = _median_time(run, args.iters, lambda: None)
            entry[f"{videos}_videos_per_run"] = {"infer_ms": 1000 * seconds, "videos_per_s": videos / seconds}
        if name == f"{args.preset} fp32":
            entry["breakdown"] = _ort_breakdown(engine, feeds, args.iters)
        engine.close()
        results[name] = entry
        print(f"onnxruntime {name}: {entry}", flush=True)
    return results


def _video_feeds(engine: Any, video: Path) -> dict[str, Any]:
    """One video's feeds for `engine`'s graph: CLIPS clip pairs x CROPS crops of the first 10 s, decoded
    at the model's own short side (the preset's and the shipped model's input sizes differ)."""
    from fstcn.core.clips import plan_clip_pairs

    plan = plan_clip_pairs(0.0, 9.96, engine.meta.sampling, CLIPS)
    _, decode = _decoder(engine.meta.resize_short)
    frames, times = decode(video, plan.all_times())
    return dict(engine.prepare(frames, times, plan, CROPS))


def _shipped_model() -> Path | None:
    """The shipped default model when the bundle is importable and holds it (a bare checkout may not)."""
    try:
        from fstcn.models import default_model_path
    except ImportError:
        return None
    path = default_model_path()
    return path if path.is_file() else None


def _ort_breakdown(engine: Any, feeds: dict[str, Any], iters: int) -> dict[str, Any]:
    """Where one video's ONNX Runtime time goes: the run with inputs already on the device (I/O binding,
    so no host-to-device copy of the float32 inputs) and ONNX Runtime's own per-operator profile."""
    import onnxruntime as ort

    from fstcn.core.meta import PROBS_OUTPUT

    on_gpu = engine.provider != "cpu"
    device = "cuda" if on_gpu else "cpu"
    session = engine.model.session
    binding = session.io_binding()
    for key, array in feeds.items():
        binding.bind_ortvalue_input(key, ort.OrtValue.ortvalue_from_numpy(array, device, 0))
    binding.bind_output(PROBS_OUTPUT, device)
    bound, _ = _median_time(lambda: session.run_with_iobinding(binding), iters, lambda: None)

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort-profile")
    profiled = ort.InferenceSession(str(engine.model_path), options, providers=engine.providers)
    runs = 3
    for _ in range(runs + 1):
        profiled.run([PROBS_OUTPUT], feeds)
    profile = Path(profiled.end_profiling())
    events = json.loads(profile.read_text())
    shutil.rmtree(profile.parent, ignore_errors=True)
    per_op: dict[str, float] = {}
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            op = event.get("args", {}).get("op_name", "?")
            per_op[op] = per_op.get(op, 0.0) + event["dur"] / 1000 / (runs + 1)
    top = dict(sorted(per_op.items(), key=lambda item: -item[1])[:8])
    return {
        "infer_ms_inputs_on_device": 1000 * bound,
        "input_mb": sum(array.nbytes for array in feeds.values()) / 1e6,
        "kernel_ms_per_run_by_op": {op: round(ms, 2) for op, ms in top.items()},
        "kernel_ms_per_run_total": round(sum(per_op.values()), 2),
    }


def _preset_graph_path(tmp: Path, preset: str, precision: str) -> Path:
    return tmp / f"{preset}-{precision}.onnx"


def _service_pipeline(plain: Path, video: Path, args: Any, budget_left: Any, save: Any) -> dict[str, Any]:
    """The service's data plane, `fstcn.service.pipeline.Pipeline.predict_file` (probe, decode, preprocess,
    infer, fuse; 5 clips x 18 crops, SCI) on one video at a time, for the preset's plain fp32 graph
    `plain`, the shipped model and their frames graphs (preprocessing in the graph; shared trunk to the
    lower SCL and to the branch convs): per-stage and total medians in ms."""
    from fstcn.core.options import PredictOptions
    from fstcn.core.video.decode import VideoLimits
    from fstcn.model.export.frames import export_exact_graph
    from fstcn.service.engine import Engine
    from fstcn.service.pipeline import Pipeline

    tmp, shipped = plain.parent, _shipped_model()
    builders = {
        f"{args.preset} fp32 plain": lambda: plain,
        f"{args.preset} fp32 frames graph": lambda: (
            export_exact_graph(plain, plain.with_suffix(".frames.onnx")).onnx_path
        ),
    }
    if shipped is not None:
        builders["shipped plain"] = lambda: shipped
        builders["shipped frames graph"] = lambda: (
            export_exact_graph(shipped, tmp / "shipped.frames.onnx").onnx_path
        )
        for share in ("lower", "branch"):
            builders[f"shipped shared {share}"] = functools.partial(_trunk_graph_path, shipped, tmp, share)
    results: dict[str, Any] = {}
    for name, build in builders.items():
        if not budget_left():
            results[name] = "skipped: time budget"
            continue
        engine = Engine.load(build())
        engine.warm_up()
        pipeline = Pipeline(engine, limits=VideoLimits())
        pipeline.predict_file(video, PredictOptions())
        totals, stages = [], []
        for _ in range(args.iters):
            start = time.perf_counter()
            prediction = pipeline.predict_file(video, PredictOptions())
            totals.append(time.perf_counter() - start)
            stages.append(prediction.timing_s)
        results[name] = {
            "providers": engine.providers,
            "total_ms": 1000 * statistics.median(totals),
            "videos_per_s": 1 / statistics.median(totals),
            "stage_ms": {key: 1000 * statistics.median(s[key] for s in stages) for key in stages[0]},
        }
        engine.close()
        save()
        print(f"service pipeline {name}: {results[name]}", flush=True)
    return results


def _trunk_graph_path(shipped: Path, tmp: Path, share: str) -> Path:
    """The shipped model's shared-trunk frames graph, whole-frame work up to `share` ("lower", "branch")."""
    from fstcn.model.export.calibration import calibration_beside
    from fstcn.model.export.shared import export_trunk_graph

    out = tmp / f"shipped.{share}.onnx"
    calibration = calibration_beside(shipped)
    return export_trunk_graph(shipped.with_suffix(".pt"), out, share=share, calibration=calibration).onnx_path


if __name__ == "__main__":
    sys.exit(main())

"""Measurement helpers of the benchmark: repeated timing with medians and spread, the machine's
description, the SGEMM peak probe and the network's FLOP counts from its architecture.

Every figure of `fstcn bench` is a ratio or percentage of numbers measured side by side in one run, so
the helpers here time several candidates round-robin (`interleaved`) rather than one after the other:
a noisy neighbour then slows every candidate of a round alike.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fstcn.core.meta import APPEARANCE_INPUT, MOTION_INPUT

SETTLE_S = 0.2  # pause before each timed call (see `interleaved`)


@dataclass(frozen=True)
class Stats:
    """Summary of repeated measurements (seconds or any unit): median, min, max, quartiles, count."""

    median: float
    min: float
    max: float
    p25: float
    p75: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Stats:
        if not values:
            raise ValueError("no measurements")
        ordered = sorted(values)
        quartiles = (
            statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1 else ordered * 3
        )
        return cls(
            median=statistics.median(ordered),
            min=ordered[0],
            max=ordered[-1],
            p25=quartiles[0],
            p75=quartiles[2],
            n=len(ordered),
        )

    @property
    def spread(self) -> float:
        """(max - min) / median: how far apart the repetitions were."""
        return (self.max - self.min) / self.median if self.median else float("nan")

    def to_dict(self, scale: float = 1.0) -> dict[str, float]:
        raw = asdict(self)
        return {key: (value * scale if key != "n" else value) for key, value in raw.items()}


def ratio_stats(numerators: list[float], denominators: list[float]) -> Stats:
    """Per-round ratios (numerator_i / denominator_i) of two interleaved series."""
    if len(numerators) != len(denominators):
        raise ValueError("the two series need the same number of rounds")
    return Stats.of([a / b for a, b in zip(numerators, denominators, strict=True)])


def interleaved(
    candidates: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1, settle_s: float = SETTLE_S
) -> dict[str, list[float]]:
    """Time each candidate `repeats` times, round-robin, after `warmup` untimed calls each.

    Each call starts `settle_s` after the previous one ends: ONNX Runtime's and PyTorch's worker threads
    spin for a while after a run, and on 2 cores the spinning threads of the previous candidate's
    session slowed the next one (a 64 ms graph timed 90 ms right after another session's run).
    Returns name -> wall seconds per call, index i of every list from the same round.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if settle_s < 0:
        raise ValueError(f"settle_s must be >= 0, got {settle_s}")
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            time.sleep(settle_s)
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def random_plain_feeds(rows: int, crop_size: int, clip_length: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal inputs of a plain graph: appearance (rows, 3, c, c), motion (rows, T, 3, c, c)."""
    rng = np.random.default_rng(seed)
    return {
        APPEARANCE_INPUT: rng.standard_normal((rows, 3, crop_size, crop_size), dtype=np.float32),
        MOTION_INPUT: rng.standard_normal((rows, clip_length, 3, crop_size, crop_size), dtype=np.float32),
    }


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def machine() -> dict[str, Any]:
    """lscpu summary, cores, memory and library versions."""
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False).stdout
        wanted = (
            "Model name",
            "CPU(s)",
            "Thread(s) per core",
            "Core(s) per socket",
            "Socket(s)",
            "Flags",
            "L2 cache",
            "L3 cache",
            "CPU max MHz",
            "Hypervisor vendor",
        )
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in wanted:
                value = value.strip()
                if key.strip() == "Flags":  # only the SIMD flags that matter for SGEMM
                    value = " ".join(f for f in value.split() if f.startswith(("avx", "fma", "amx", "sse4")))
                info[key.strip()] = value
    except (OSError, subprocess.SubprocessError):
        info["lscpu"] = "unavailable"
    info["os.cpu_count"] = os.cpu_count()
    try:
        with open("/proc/meminfo") as handle:
            info["MemTotal"] = handle.readline().split(":")[1].strip()
    except OSError:
        pass
    import onnxruntime

    info["numpy"] = np.__version__
    info["onnxruntime"] = onnxruntime.__version__
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        pass
    return info


def sgemm_peak(threads: int, size: int = 2048, repeats: int = 5) -> dict[str, Any]:
    """GFLOP/s of numpy float32 matmul (size x size) @ (size x size) on `threads` BLAS threads.

    2 * size^3 FLOPs per product; the best of `repeats` is the peak, the median is reported too.
    """
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    out = np.empty((size, size), dtype=np.float32)
    flops = 2.0 * size**3
    with threadpool_limits(limits=threads, user_api="blas"):
        np.matmul(a, b, out=out)  # warm-up: threads spun up, pages touched
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            np.matmul(a, b, out=out)
            seconds.append(time.perf_counter() - start)
    gflops = [flops / s / 1e9 for s in seconds]
    return {
        "threads": threads,
        "size": size,
        "peak_gflops": max(gflops),
        "gflops": Stats.of(gflops).to_dict(),
        "blas": _blas_name(),
    }


def _blas_name() -> str:
    from threadpoolctl import threadpool_info

    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            return f"{pool.get('internal_api')} {pool.get('version')} ({pool.get('architecture')})"
    return "unknown"


# ---------------------------------------------------------------------------------------------- FLOPs


@dataclass(frozen=True)
class NetworkFlops:
    """Multiply-accumulates of one clip pair at one crop (the plain graph's row), by part."""

    lower_conv: int  # the lower SCL convs, all 1 + T frames
    upper_conv: int  # branch convs and TCL convs
    fc: int  # FCs and the T-P matrix
    lower_per_frame: int  # lower SCL convs of one crop-sized frame

    @property
    def conv(self) -> int:
        return self.lower_conv + self.upper_conv

    @property
    def total(self) -> int:
        return self.conv + self.fc


def network_flops(config: Any, num_classes: int) -> NetworkFlops:
    """MACs per plain row from `fstcn.model.network.layer_summary` (a meta-device forward: no weights)."""
    import torch

    from fstcn.model.network import FstCN, layer_summary

    with torch.device("meta"):
        model = FstCN(config, num_classes)
    rows = layer_summary(model, batch_size=1, device="meta")
    lower = sum(r.macs for r in rows if r.name.startswith("lower.") and r.kind == "Conv2d")
    upper = sum(r.macs for r in rows if not r.name.startswith("lower.") and r.kind == "Conv2d")
    fc = sum(r.macs for r in rows if r.kind in ("Linear", "TPOperator"))
    return NetworkFlops(lower, upper, fc, lower // (1 + config.clip_length))


def lower_conv_macs(config: Any, height: int, width: int) -> int:
    """MACs of the lower SCL convs on one height x width frame (same shape rules as the network)."""
    from fstcn.core.presets import conv_out

    total, h, w, channels = 0, height, width, 3
    for index, (out_channels, kernel, stride) in enumerate(
        zip(config.lower_widths, config.lower_kernels, config.lower_strides, strict=True)
    ):
        h, w = conv_out(h, kernel, stride, kernel // 2), conv_out(w, kernel, stride, kernel // 2)
        total += h * w * out_channels * channels * kernel * kernel
        channels = out_channels
        if index < 2:
            h, w = (
                conv_out(h, config.pool_kernel, config.pool_stride, 0),
                conv_out(w, config.pool_kernel, config.pool_stride, 0),
            )
    return total


def _lower_map(config: Any, size: int) -> int:
    from fstcn.core.presets import conv_out

    for index, (kernel, stride) in enumerate(zip(config.lower_kernels, config.lower_strides, strict=True)):
        size = conv_out(size, kernel, stride, kernel // 2)
        if index < 2:
            size = conv_out(size, config.pool_kernel, config.pool_stride, 0)
    return size


def request_flops(
    config: Any, num_classes: int, *, clips: int, crops: int, height: int, width: int
) -> dict[str, int]:
    """FLOPs (2 x MACs) of one request, plain (every crop through the whole network) and shared trunk
    (the trunk once per frame and view on the whole frame, the upper layers per crop)."""
    net = network_flops(config, num_classes)
    rows = clips * crops
    frames = clips * (1 + config.clip_length)
    views = 2 if crops in (2, 18) else 1
    trunk = frames * views * lower_conv_macs(config, height, width)
    # branch convs (Conv(branch_width, 3, 1) on the lower output) on the whole maps instead of per crop
    h, w = _lower_map(config, height), _lower_map(config, width)
    kernel = config.branch_kernel
    branch = frames * views * h * w * config.branch_width * config.lower_widths[-1] * kernel * kernel
    per_crop_branch = (
        (1 + config.clip_length)
        * config.lower_size**2
        * config.branch_width
        * config.lower_widths[-1]
        * kernel
        * kernel
    )
    return {
        "branch_total": 2 * (trunk + branch + rows * (net.upper_conv - per_crop_branch + net.fc)),
        "branch_conv": 2 * (trunk + branch + rows * (net.upper_conv - per_crop_branch)),
        "plain_total": 2 * rows * net.total,
        "plain_conv": 2 * rows * net.conv,
        "shared_total": 2 * (trunk + rows * (net.upper_conv + net.fc)),
        "shared_conv": 2 * (trunk + rows * net.upper_conv),
    }

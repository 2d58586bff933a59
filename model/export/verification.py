"""What every export shares: its error, its tolerances and the verified write of its file.

An exported graph lands at its final path only after it has been opened the way every reader opens it
(`fstcn.core.runtime.OnnxModel`, ONNX Runtime's CPU provider) and its probabilities have matched its
reference within tolerance (docs/design.md, "Model file"). Anything else raises `ExportVerificationError`
and leaves no file behind, so a reader never sees a half-written or unverified model.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from fstcn.core.errors import InternalError
from fstcn.core.runtime import CPU, ModelLoadError, OnnxModel

# fp32 reproduces the reference to float rounding; float16 has a 2^-11 relative step and its errors
# accumulate over ~10 layers.
FP32_TOLERANCE = 1e-4
FP16_TOLERANCE = 1e-2


class ExportVerificationError(RuntimeError):
    """The exported graph does not reproduce its reference within tolerance, or does not load."""


def onnx_output(out: str | Path) -> Path:
    """`out` as a Path, or ValueError when it does not end in .onnx."""
    out = Path(out)
    if out.suffix != ".onnx":
        raise ValueError(f"the output must end in .onnx, got {out}")
    return out


def write_verified(
    out: Path, serialised: bytes, verify: Callable[[OnnxModel], dict[str, float]]
) -> dict[str, float]:
    """Write `serialised` beside `out` under a temporary name, open it as `OnnxModel` on the CPU, run
    `verify` on it (check name -> max |dp|; it raises on a failed check) and only then rename it to `out`.
    A file that does not load is an `ExportVerificationError` too."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(serialised)
        try:
            diffs = verify(OnnxModel.load(tmp, providers=[CPU]))
        except (ModelLoadError, InternalError) as error:  # the contract checks of the runtime
            raise ExportVerificationError(f"the exported graph does not serve: {error}") from error
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return diffs


def check_max_diff(diffs: dict[str, float], tolerance: float, graph: str, reference: str) -> None:
    """ExportVerificationError unless every check's max |dp| in `diffs` is <= `tolerance`."""
    worst = max(diffs, key=diffs.__getitem__)
    if not diffs[worst] <= tolerance:  # also catches NaN
        raise ExportVerificationError(
            f"{graph} disagrees with {reference}: max |dp| = {diffs[worst]:.3g} on {worst!r} > tolerance "
            f"{tolerance:g} (all checks: {diffs})"
        )

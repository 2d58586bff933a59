"""The request options of a prediction, declared once (docs/design.md, "Request options").

`PredictOptions` is what a caller may choose per video: how many classes to return, how many clip pairs
M to sample, how many test-time crops K per pair, and the fusion method. The HTTP schemas, the CLI and
the evaluation read their ranges from here; `resolved(meta)` checks a request against a model and fills
its defaults, raising `InvalidParameter` (the documented `invalid_parameter` error).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from fstcn.core.clips import CROP_COUNTS
from fstcn.core.errors import InvalidParameter
from fstcn.core.fusion import FUSION_METHODS
from fstcn.core.meta import ModelMeta

__all__ = ["CROP_COUNTS", "DEFAULT_CROPS", "DEFAULT_FUSION", "DEFAULT_TOP_K", "FUSION_METHODS", "MAX_CLIPS"]

MAX_CLIPS = 32  # most clip pairs one request may ask for: 32 x 18 crops bounds a request's rows
DEFAULT_TOP_K = 5
DEFAULT_CROPS = 18  # the paper's test protocol: 9 positions x horizontal flip
DEFAULT_FUSION = "sci"


@dataclass(frozen=True)
class PredictOptions:
    """Per-request options. None: `top_k` 5 (N if fewer classes), `clips` the model's default M."""

    top_k: int | None = None
    clips: int | None = None
    crops: int = DEFAULT_CROPS
    fusion: str = DEFAULT_FUSION

    def resolved(self, meta: ModelMeta) -> PredictOptions:
        """These options checked against `meta`, defaults filled in. Raises InvalidParameter."""
        top_k = min(DEFAULT_TOP_K, meta.num_classes) if self.top_k is None else self.top_k
        if not 1 <= top_k <= meta.num_classes:
            raise InvalidParameter(
                f"top_k must be between 1 and the number of classes ({meta.num_classes}), got {top_k}"
            )
        clips = meta.sampling.num_clips if self.clips is None else self.clips
        if not 1 <= clips <= MAX_CLIPS:
            raise InvalidParameter(f"clips must be between 1 and {MAX_CLIPS}, got {clips}")
        if self.crops not in CROP_COUNTS:
            raise InvalidParameter(f"crops must be one of {CROP_COUNTS}, got {self.crops}")
        if self.fusion not in FUSION_METHODS:
            raise InvalidParameter(f"fusion must be one of {FUSION_METHODS}, got {self.fusion!r}")
        return replace(self, top_k=top_k, clips=clips)

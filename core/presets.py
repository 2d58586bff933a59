"""The FstCN architecture as data: one frozen `FstCNConfig` per preset (`paper`, `small`, `tiny`).

Standard library only (no torch), so that code which only needs a preset's sizes or sampling defaults
(the CLI, metadata) can read them cheaply. `fstcn.model.network` builds the module from a config; checkpoints
store `asdict(config)` and rebuild it with `FstCNConfig.from_dict`. Every number that is not the paper's
carries a one-line reason; the paper preset is docs/design.md, "Network", exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from fstcn.core.meta import SamplingParams

NORMS = ("lrn", "batch")
PATHS = ("both", "spatial", "temporal")


# AlexNet's LRN (the paper's "Norm"): size 5, alpha 1e-4, beta 0.75, k 2.
LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 1e-4, 0.75, 2.0


@dataclass(frozen=True)
class FstCNConfig:
    """Sizes of one FstCN network. Convs are Conv(filters, kernel, stride) with padding k//2."""

    name: str
    # input geometry: frames are resized to short side `resize_short`, crops are `crop_size` squared
    crop_size: int = 204
    resize_short: int = 240
    # lower SCL: conv1..conv4, shared by the appearance frame and every V_diff frame
    lower_widths: tuple[int, int, int, int] = (96, 256, 512, 512)
    lower_kernels: tuple[int, int, int, int] = (7, 5, 3, 3)
    lower_strides: tuple[int, int, int, int] = (2, 2, 1, 1)
    pool_kernel: int = 3  # Pool(3, 2) after conv1 and conv2
    pool_stride: int = 2
    norm: str = (
        "lrn"  # "lrn": Conv-ReLU-LRN after conv1/conv2 (paper); "batch": Conv-BN-ReLU on every SCL conv
    )
    # upper SCL branches (one spatial, one temporal, separate weights): Conv(branch_width, 3, 1) - Pool(3, 3)
    branch_width: int = 128  # also the size of the T-P matrix P (branch_width x branch_width)
    branch_kernel: int = 3
    branch_pool: int = 3  # Pool(3, 3): kernel = stride
    temporal_pool: int | None = None  # the temporal branch's pool before the T-P operator; None = branch_pool
    # TCL: two parallel Conv2d over the (C, T) plane with H*W input channels, no pooling
    tcl_filters: tuple[int, int] = (32, 32)
    tcl_kernels: tuple[int, int] = (3, 5)
    tcl_dropout: float = 0.5
    # FC stacks: each path flatten -> fc_dims[0] -> fc_dims[1]; fusion concat -> fusion_dim -> classifier
    fc_dims: tuple[int, int] = (4096, 2048)
    fusion_dim: int = 2048
    fc_dropout: float = 0.5
    aux_dropout: float = 0.5  # dropout before the auxiliary (stage-1 frame) classifier
    paths: str = "both"  # "spatial" / "temporal": the paper's control experiment (one path into fusion)
    # sampling defaults (docs/design.md, "Sampling"), recorded in the exported model
    clip_length: int = 5  # l_t; also the T axis of the TCL, so it fixes the temporal FC's input size
    stride: int = 5  # s_t
    diff_offset: int = 9  # d_t
    num_clips: int = 5  # M at test time
    ref_fps: float = 25.0

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.paths not in PATHS:
            raise ValueError(f"paths must be one of {PATHS}, got {self.paths!r}")
        if self.crop_size > self.resize_short:
            raise ValueError(f"crop_size {self.crop_size} exceeds resize_short {self.resize_short}")
        for name in ("fc_dropout", "tcl_dropout", "aux_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        self.sampling  # noqa: B018  validates the sampling fields
        if self.temporal_pool is not None and self.temporal_pool < 1:
            raise ValueError(f"temporal_pool must be >= 1, got {self.temporal_pool}")
        side = min(self.feature_size, self.temporal_feature_size)
        if side < 1:
            raise ValueError(f"crop_size {self.crop_size} is too small for preset {self.name!r}: maps vanish")

    @property
    def sampling(self) -> SamplingParams:
        """The sampling defaults as `fstcn.core.meta.SamplingParams`."""
        return SamplingParams(
            clip_length=self.clip_length,
            stride=self.stride,
            diff_offset=self.diff_offset,
            num_clips=self.num_clips,
            ref_fps=self.ref_fps,
        )

    @property
    def lower_size(self) -> int:
        """Side of the lower SCL output map (conv pad k//2, pools unpadded, floor)."""
        return self._lower_conv_sides()[-1]

    def _lower_conv_sides(self) -> list[int]:
        """Side of each lower SCL conv's output map (conv1, conv2 before their Pool(3, 2))."""
        side, sides = self.crop_size, []
        for index, (kernel, stride) in enumerate(zip(self.lower_kernels, self.lower_strides, strict=True)):
            side = conv_out(side, kernel, stride, kernel // 2)
            sides.append(side)
            if index < 2:
                side = conv_out(side, self.pool_kernel, self.pool_stride, 0)
        return sides

    @property
    def largest_activation_per_clip_pair(self) -> int:
        """Elements of the network's largest tensor per clip-pair crop: a lower SCL conv's output over the
        appearance frame and the l_t V_diff frames (conv1's, at every preset), with the LRN's channel
        padding where the norm is "lrn" (the expanded export pads C to C + size - 1 for an AveragePool)."""
        largest = 0
        for index, (width, side) in enumerate(zip(self.lower_widths, self._lower_conv_sides(), strict=True)):
            lrn_padding = LRN_SIZE - 1 if self.norm == "lrn" and index < 2 else 0
            largest = max(largest, (width + lrn_padding) * side * side)
        return (self.clip_length + 1) * largest

    @property
    def feature_size(self) -> int:
        """Side of the spatial branch's output map after Pool(branch_pool, branch_pool)."""
        side = conv_out(self.lower_size, self.branch_kernel, 1, self.branch_kernel // 2)
        return conv_out(side, self.branch_pool, self.branch_pool, 0)

    @property
    def temporal_pool_size(self) -> int:
        """Pool kernel (= stride) of the temporal branch."""
        return self.branch_pool if self.temporal_pool is None else self.temporal_pool

    @property
    def temporal_feature_size(self) -> int:
        """Side of the temporal branch's output map; its H*W positions are the TCL's input channels."""
        side = conv_out(self.lower_size, self.branch_kernel, 1, self.branch_kernel // 2)
        return conv_out(side, self.temporal_pool_size, self.temporal_pool_size, 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FstCNConfig:
        """Inverse of `to_dict` (lists from JSON/pickles become tuples); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown FstCNConfig fields: {sorted(unknown)}")
        values = {key: tuple(value) if isinstance(value, list) else value for key, value in raw.items()}
        return cls(**values)  # type: ignore[arg-type]


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output side of a conv/pool without dilation, rounding down (PyTorch's default)."""
    return (size + 2 * padding - kernel) // stride + 1


PAPER = FstCNConfig(name="paper")  # docs/design.md, "Network", exactly: all defaults above

SMALL = FstCNConfig(
    name="small",
    # Sized for CPU training from scratch on ~1500 Synthetic Actions videos (2 cores, well under an hour).
    # Measured (torch 2.13 CPU, 2 threads, batch 16 clip pairs, SGD step): forward+backward 38.6 samples/s,
    # eval forward 132 samples/s; 0.19 GMACs per clip pair; 2.41M exported parameters (fp32 ONNX ~9.7 MB).
    crop_size=112,  # the usual CPU-sized video crop: 3.3x fewer pixels than the paper's 204
    resize_short=128,  # crop/short side 0.875, near the paper's 204/240 = 0.85
    lower_widths=(32, 64, 96, 96),  # 1/3..1/5 of the paper's widths: ten synthetic classes, not 101 real ones
    # paper kernels and strides: 112 -> 56 -> 27 -> 14 -> 6 -> 6 -> Pool(3,3) -> 2, so H*W = 4 TCL channels.
    # conv2 stride 1 (H*W = 16 like the paper) cost 2.7x the MACs and ran at 21.7 samples/s: under 25/s.
    norm="batch",  # from scratch, BN trains much faster than LRN; it folds into the convs at export
    branch_width=64,  # P is 64x64
    # No pool before the T-P operator: the TCL sees the 6x6 map (36 input channels) instead of 2x2, so it
    # can follow where motion edges go over the l_t V_diff frames, the only cue that tells sit_down from
    # its time reversal stand_up (one V_diff frame's signs flip with figure/background contrast). Measured
    # (temporal path only, sit_down vs stand_up, 15 epochs from the synth-r2 weights): 95-100% test
    # accuracy in the last 4 epochs vs 84-92% with Pool(3,3); experiments/direction_of_time/
    # temporal_pool_probe.py. Cost: the TCL grows from 0.7 to 6 MMACs.
    temporal_pool=1,
    tcl_filters=(16, 16),
    tcl_dropout=0.3,  # small TCL maps (16 x 64 x 5 each); 0.5 here and on every FC is much noise
    fc_dims=(192, 128),  # temporal FC1 is 32*64*5 = 10240 -> 192 (2.0M weights, 81% of all): ONNX ~10 MB
    fusion_dim=128,
    fc_dropout=0.5,  # the FCs hold ~90% of the weights; ~1500 training videos overfit them without it
    aux_dropout=0.2,  # the auxiliary classifier is one linear layer on pooled features: little to overfit
)

TINY = FstCNConfig(
    name="tiny",
    crop_size=32,  # tests: milliseconds per forward
    resize_short=40,
    lower_widths=(8, 8, 16, 16),
    lower_kernels=(3, 3, 3, 3),  # 32 px cannot afford 7x7 stride-2 convs: maps would vanish
    lower_strides=(
        1,
        1,
        1,
        1,
    ),  # 32 -> 15 -> 7 -> Pool(3,3) -> 2: keeps H*W = 4 > 1 so the T-P reshape is tested
    norm="batch",  # the same code path as `small`, including BN folding at export
    branch_width=8,
    tcl_filters=(4, 4),
    fc_dims=(16, 16),
    fusion_dim=16,
)

PRESETS: dict[str, FstCNConfig] = {config.name: config for config in (PAPER, SMALL, TINY)}


def get_config(preset: str, **overrides: Any) -> FstCNConfig:
    """The preset's config with `overrides` applied (field names of `FstCNConfig`)."""
    try:
        config = PRESETS[preset]
    except KeyError:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}") from None
    known = {f.name for f in fields(FstCNConfig)} - {"name"}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown config overrides: {sorted(unknown)}")
    return replace(config, **overrides)

"""The FstCN network (Sun, Jia, Yeung, Shi, ICCV 2015) in PyTorch, following docs/design.md, "Network".

One sample is one clip pair at one crop: the appearance frame (B, 3, c, c) and the l_t V_diff frames
(B, T, 3, c, c). The lower spatial convolutional layers (SCL) are shared by all 1 + T frames; a spatial
branch turns the appearance features into an FC vector; a temporal branch runs per-frame convs, the
T-P operator (reshape to (B, H*W, C, T) and a learnable C x C matrix P on the feature axis), the
two-kernel temporal convolutional layer (TCL, no pooling) and its own FC stack; the two FC vectors are
concatenated, fused by one more FC and classified. An auxiliary frame classifier on the lower SCL output
serves stage-1 training only and is neither exported nor counted.

Paper preset, output shapes per layer (B = batch; the lower SCL runs on B + B*T = 6B frames, T = 5;
convs pad k//2, pools do not pad and round down):

    input frames                         (6B,   3, 204, 204)
    conv1 Conv(96, 7, 2)  ReLU LRN       (6B,  96, 102, 102)   (204 + 6 - 7) // 2 + 1 = 102
    pool1 Pool(3, 2)                     (6B,  96,  50,  50)   (102 - 3) // 2 + 1 = 50
    conv2 Conv(256, 5, 2) ReLU LRN       (6B, 256,  25,  25)   (50 + 4 - 5) // 2 + 1 = 25
    pool2 Pool(3, 2)                     (6B, 256,  12,  12)   (25 - 3) // 2 + 1 = 12
    conv3 Conv(512, 3, 1) ReLU           (6B, 512,  12,  12)
    conv4 Conv(512, 3, 1) ReLU           (6B, 512,  12,  12)
    spatial: conv Conv(128, 3, 1) ReLU   (B,  128,  12,  12)
             pool Pool(3, 3)             (B,  128,   4,   4)   (12 - 3) // 3 + 1 = 4
             flatten -> FC -> FC         (B, 2048) -> (B, 4096) -> (B, 2048)
    temporal: conv, pool per frame       (5B, 128,   4,   4)
             T-P: reshape, permute       (B, 16, 128, 5)       H*W = 16 channels over the (C, T) plane
                  P (128 x 128) on C     (B, 16, 128, 5)
             TCL Conv(32,3,1) | Conv(32,5,1) ReLU Dropout, concat   (B, 64, 128, 5)
             flatten -> FC -> FC         (B, 40960) -> (B, 4096) -> (B, 2048)
    fusion: concat -> FC -> classifier   (B, 4096) -> (B, 2048) -> (B, N)

Parameters of the paper preset (exported parts; weights + biases; LRN, pools and dropout have none):

    conv1   3*96*7*7 + 96        =     14,208      spatial conv  512*128*9 + 128   =     589,952
    conv2   96*256*5*5 + 256     =    614,656      spatial FC1   2048*4096 + 4096  =   8,392,704
    conv3   256*512*9 + 512      =  1,180,160      spatial FC2   4096*2048 + 2048  =   8,390,656
    conv4   512*512*9 + 512      =  2,359,808      temporal conv 512*128*9 + 128   =     589,952
    lower SCL total              =  4,168,832      P             128*128           =      16,384
    fusion FC  4096*2048 + 2048  =  8,390,656      TCL 3x3       16*32*9 + 32      =       4,640
    classifier 2048*N + N        =     2049*N      TCL 5x5       16*32*25 + 32     =      12,832
                                                   temporal FC1  40960*4096 + 4096 = 167,776,256
                                                   temporal FC2  4096*2048 + 2048  =   8,390,656

    total = 206,723,520 + 2049*N     (N = 101, UCF101: 206,930,469; N = 10: 206,744,010)

The temporal FC1 (40960 -> 4096) holds 81% of the weights: the TCL keeps the full (C, T) plane (no
pooling), as the paper specifies. The `small` and `tiny` presets are in `fstcn.core.presets`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from fstcn.core.presets import LRN_ALPHA, LRN_BETA, LRN_K, LRN_SIZE, PRESETS, FstCNConfig, get_config

__all__ = ["PRESETS", "FstCN", "FstCNConfig", "FstCNFeatures", "LayerRow", "fstcn", "layer_summary"]


class _OnnxLRN(torch.autograd.Function):
    """PyTorch's LRN that the ONNX exporter writes as one `LRN` node (same formula: x / (k + alpha/n *
    sum of n squares across channels)^beta, window centred for odd n) instead of its Pow-Pad-AveragePool
    expansion, which cost ~45 of 110 ms of kernel time per paper-preset video on an H100
    (bench/RESULTS.md)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, size: int, alpha: float, beta: float, k: float) -> Tensor:
        return nn.functional.local_response_norm(x, size, alpha, beta, k)

    @staticmethod
    def symbolic(g: Any, x: Any, size: int, alpha: float, beta: float, k: float) -> Any:
        return g.op("LRN", x, size_i=size, alpha_f=alpha, beta_f=beta, bias_f=k)


class LocalResponseNorm(nn.LocalResponseNorm):
    """AlexNet LRN computed in float32 whatever the input dtype: (N, C, H, W) -> (N, C, H, W).

    The sum of squares overflows float16 (max 65504) for activations above ~100, and CPU PyTorch has no
    float16 kernel for it; in float32 models the casts are no-ops. Exported as ONNX's LRN operator, or,
    with `onnx_node` False, as PyTorch's expansion (faster on ONNX Runtime's CPU provider).
    """

    def __init__(self) -> None:
        super().__init__(LRN_SIZE, alpha=LRN_ALPHA, beta=LRN_BETA, k=LRN_K)
        self.onnx_node = True

    def forward(self, x: Tensor) -> Tensor:
        if self.onnx_node and torch.onnx.is_in_onnx_export():
            normed = _OnnxLRN.apply(x.float(), self.size, self.alpha, self.beta, self.k)
            return normed.to(x.dtype)  # type: ignore[no-any-return]
        return super().forward(x.float()).to(x.dtype)


class ConvBlock(nn.Sequential):
    """Conv(k, s, pad k//2) [-> BatchNorm] -> ReLU [-> LRN]: (N, C_in, H, W) -> (N, C_out, H', W').

    BatchNorm sits directly after the conv so that export can fold it into the conv's weights.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int, *, batch_norm: bool, lrn: bool
    ) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv=nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2)
        )
        if batch_norm:
            layers["bn"] = nn.BatchNorm2d(out_channels)
        layers["relu"] = nn.ReLU(inplace=True)
        if lrn:
            layers["lrn"] = LocalResponseNorm()
        super().__init__(layers)


class LowerSCL(nn.Sequential):
    """The shared lower spatial conv layers: (N, 3, c, c) -> (N, lower_widths[3], s, s)."""

    def __init__(self, config: FstCNConfig) -> None:
        batch = config.norm == "batch"
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        in_channels = 3
        widths, kernels, strides = config.lower_widths, config.lower_kernels, config.lower_strides
        for index, (width, kernel, stride) in enumerate(zip(widths, kernels, strides, strict=True)):
            early = index < 2  # the paper normalises and pools after conv1 and conv2 only
            layers[f"conv{index + 1}"] = ConvBlock(
                in_channels, width, kernel, stride, batch_norm=batch, lrn=early and not batch
            )
            if early:
                layers[f"pool{index + 1}"] = nn.MaxPool2d(config.pool_kernel, config.pool_stride)
            in_channels = width
        super().__init__(layers)


class BranchConv(nn.Sequential):
    """Upper SCL of one path: Conv(C, 3, 1) -> ReLU -> Pool(p, p): (N, C4, s, s) -> (N, C, h, w)."""

    def __init__(self, config: FstCNConfig, pool: int) -> None:
        super().__init__(
            OrderedDict(
                conv=ConvBlock(
                    config.lower_widths[-1],
                    config.branch_width,
                    config.branch_kernel,
                    1,
                    batch_norm=config.norm == "batch",
                    lrn=False,
                ),
                pool=nn.MaxPool2d(pool, pool) if pool > 1 else nn.Identity(),
            )
        )


def _fc_stack(in_features: int, dims: tuple[int, ...], dropout: float) -> nn.Sequential:
    """Linear -> ReLU -> Dropout for each width in `dims`: (B, in_features) -> (B, dims[-1])."""
    layers: list[nn.Module] = []
    for width in dims:
        layers += [nn.Linear(in_features, width), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        in_features = width
    return nn.Sequential(*layers)


class TPOperator(nn.Module):
    """The T-P operator: per-frame features (B*T, C, H, W) -> (B, H*W, C, T), then P (C x C, no bias) on C.

    P starts as the identity, so at initialisation the operator is the pure reshape/permute and training
    learns the feature-axis transform.
    """

    def __init__(self, channels: int, clip_length: int) -> None:
        super().__init__()
        self.clip_length = clip_length
        self.P = nn.Parameter(torch.eye(channels))

    def forward(self, x: Tensor) -> Tensor:
        x = self._per_clip(x).permute(0, 3, 2, 1)  # (B, T, C, H*W) -> (B, H*W, C, T)
        out: Tensor = torch.matmul(self.P, x)  # P (C, C) @ (B, H*W, C, T) -> (B, H*W, C, T)
        return out

    def time_major(self, x: Tensor) -> Tensor:
        """The same operator with the plane transposed: (B*T, C, H, W) -> (B, H*W, T, C)."""
        return self.on_time_major(self._per_clip(x).permute(0, 3, 1, 2))  # (B, T, C, H*W) -> (B, H*W, T, C)

    def on_time_major(self, x: Tensor) -> Tensor:
        """P on the feature axis of features already in time-major order: (B, H*W, T, C) -> (B, H*W, T, C)."""
        out: Tensor = torch.matmul(x, self.P.t())  # (B, H*W, T, C) @ P^T: P on C
        return out

    def _per_clip(self, x: Tensor) -> Tensor:
        """(B*T, C, H, W) -> (B, T, C, H*W), checked."""
        if x.dim() != 4 or x.shape[1] != self.P.shape[0]:
            raise ValueError(f"expected (B*T, {self.P.shape[0]}, H, W), got {tuple(x.shape)}")
        _, channels, height, width = x.shape
        return x.reshape(-1, self.clip_length, channels, height * width)


class TemporalConvLayer(nn.Module):
    """TCL: parallel Conv(f_i, k_i, 1) over the (C, T) plane with H*W input channels, ReLU, Dropout, no
    pooling; outputs concatenated: (B, H*W, C, T) -> (B, sum f_i, C, T)."""

    def __init__(
        self, in_channels: int, filters: tuple[int, ...], kernels: tuple[int, ...], dropout: float
    ) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(in_channels, width, kernel, padding=kernel // 2),
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
            )
            for width, kernel in zip(filters, kernels, strict=True)
        )
        self.width = sum(filters)  # F_tcl: output channels

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)

    def time_major(self, x: Tensor) -> Tensor:
        """The same layer on the transposed plane: (B, H*W, T, C) -> (B, sum f_i, T, C).

        conv(x^T, W^T) = conv(x, W)^T: each kernel is transposed with the plane (padding too).
        """
        outputs = []
        for conv, *activation in (list(branch) for branch in self.branches):
            assert isinstance(conv, nn.Conv2d)
            padding = tuple(reversed(conv.padding))
            y = nn.functional.conv2d(x, conv.weight.transpose(2, 3), conv.bias, padding=padding)
            for layer in activation:  # ReLU, Dropout: elementwise, the layout does not matter
                y = layer(y)
            outputs.append(y)
        return torch.cat(outputs, dim=1)


class SpatialPath(nn.Module):
    """Appearance path: lower-SCL features (B, C4, s, s) -> FC vector (B, fc_dims[-1])."""

    def __init__(self, config: FstCNConfig) -> None:
        super().__init__()
        side = config.feature_size
        self.branch = BranchConv(config, config.branch_pool)
        self.fc = _fc_stack(config.branch_width * side * side, config.fc_dims, config.fc_dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.branch(x)  # (B, C, h, w)
        return self.fc(torch.flatten(x, 1))  # (B, C, h, w) -> (B, C*h*w) -> (B, F)


class TemporalPath(nn.Module):
    """Motion path: lower-SCL features of the V_diff frames (B*T, C4, s, s) -> FC vector (B, fc_dims[-1])."""

    def __init__(self, config: FstCNConfig) -> None:
        super().__init__()
        side = config.temporal_feature_size
        self.branch = BranchConv(config, config.temporal_pool_size)
        self.tp = TPOperator(config.branch_width, config.clip_length)
        self.tcl = TemporalConvLayer(side * side, config.tcl_filters, config.tcl_kernels, config.tcl_dropout)
        tcl_features = sum(config.tcl_filters) * config.branch_width * config.clip_length
        self.fc = _fc_stack(tcl_features, config.fc_dims, config.fc_dropout)
        self.onnx_time_major = True  # export form of T-P, TCL and first FC (see above_branch)

    def forward(self, x: Tensor) -> Tensor:
        return self.above_branch(self.branch(x))  # (B*T, C4, s, s) -> (B*T, C, h, w) -> (B, F)

    def above_branch(self, x: Tensor) -> Tensor:
        """T-P operator, TCL and FC stack: branch features (B*T, C, h, w) -> (B, F).

        In an ONNX export (unless `onnx_time_major` is False) the T-P operator and the TCL run on the
        transposed (T, C) plane and the first FC takes its columns in that order: the same function,
        but with T = 5 as the convs' width ONNX Runtime's CPU kernels idle
        (`python experiments/profiling/export_forms.py` times both forms).
        """
        if self.onnx_time_major and torch.onnx.is_in_onnx_export():
            return self.time_major_head(self.tp.time_major(x))  # (B*T, C, h, w) -> (B, h*w, T, C) -> (B, F)
        x = self.tcl(self.tp(x))  # (B*T, C, h, w) -> (B, h*w, C, T) -> (B, F_tcl, C, T)
        return self.fc(torch.flatten(x, 1))  # (B, F_tcl, C, T) -> (B, F_tcl*C*T) -> (B, F)

    def time_major_head(self, x: Tensor) -> Tensor:
        """TCL and FC stack on the T-P operator's output in time-major order: (B, h*w, T, C) -> (B, F).

        The TCL runs on the transposed plane and the first FC takes its columns in that order."""
        x = self.tcl.time_major(x)  # (B, h*w, T, C) -> (B, F_tcl, T, C)
        first, rest = self.fc[0], self.fc[1:]
        assert isinstance(first, nn.Linear)
        # plain ints (not x.shape), so that the exporter folds the permuted weight into a constant
        width, channels, t = self.tcl.width, int(self.tp.P.shape[0]), self.tp.clip_length
        # (D, F_tcl*C*T) -> (D, F_tcl, C, T) -> (D, F_tcl, T, C) -> (D, F_tcl*T*C)
        weight = (
            first.weight.reshape(-1, width, channels, t).transpose(2, 3).reshape(-1, width * t * channels)
        )
        out: Tensor = rest(nn.functional.linear(torch.flatten(x, 1), weight, first.bias))
        return out


class FstCNFeatures(NamedTuple):
    """Penultimate activations (after ReLU) of each path; a path that is not built gives None."""

    spatial: Tensor | None  # (B, fc_dims[-1]) spatial path's last FC
    temporal: Tensor | None  # (B, fc_dims[-1]) temporal path's last FC
    fused: Tensor  # (B, fusion_dim) fusion FC


class FstCN(nn.Module):
    """Factorized spatio-temporal convolutional network.

    forward(appearance (B, 3, c, c), motion (B, T, 3, c, c)) -> logits (B, num_classes).
    `frame_logits(frames (B, 3, c, c))` is the auxiliary stage-1 frame classifier (not exported).
    """

    def __init__(self, config: FstCNConfig, num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.config = config
        self.num_classes = num_classes
        self.lower = LowerSCL(config)
        self.spatial = SpatialPath(config) if config.paths in ("both", "spatial") else None
        self.temporal = TemporalPath(config) if config.paths in ("both", "temporal") else None
        num_paths = (self.spatial is not None) + (self.temporal is not None)
        self.fusion = _fc_stack(num_paths * config.fc_dims[-1], (config.fusion_dim,), config.fc_dropout)
        self.classifier = nn.Linear(config.fusion_dim, num_classes)
        self.aux_classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
            nn.Dropout(config.aux_dropout),
            nn.Linear(config.lower_widths[-1], num_classes),
        )
        self.onnx_split_lower = True  # export form of the lower SCL (see features)
        _init_weights(self)

    def _check_inputs(self, appearance: Tensor, motion: Tensor) -> None:
        crop = self.config.crop_size
        if appearance.dim() != 4 or tuple(appearance.shape[1:]) != (3, crop, crop):
            raise ValueError(f"expected appearance (B, 3, {crop}, {crop}), got {tuple(appearance.shape)}")
        expected = (self.config.clip_length, 3, crop, crop)
        if motion.dim() != 5 or tuple(motion.shape[1:]) != expected:
            raise ValueError(
                f"expected motion (B, {', '.join(map(str, expected))}), got {tuple(motion.shape)}"
            )

    def features(
        self, appearance: Tensor, motion: Tensor, drop_spatial: Tensor | None = None
    ) -> FstCNFeatures:
        """Penultimate activations: appearance (B, 3, c, c), motion (B, T, 3, c, c) -> FstCNFeatures.

        `drop_spatial` (B,) bool (training only): zero those samples' spatial features before the fusion,
        so that the fusion must classify them from the temporal path alone (path dropout).
        """
        self._check_inputs(appearance, motion)
        crop, clip_length = self.config.crop_size, self.config.clip_length
        motion_frames = motion.reshape(-1, 3, crop, crop)  # (B, T, 3, c, c) -> (B*T, 3, c, c)
        if self.spatial is not None and self.temporal is not None:
            if self.onnx_split_lower and torch.onnx.is_in_onnx_export():
                # two passes with the same weights (eval-mode BatchNorm is per sample): no copy of every
                # frame into one batch (a 14 ms Concat of one request's 540 frames in ONNX Runtime)
                spatial = self.spatial(self.lower(appearance))  # (B, 3, c, c) -> (B, F)
                temporal = self.temporal(self.lower(motion_frames))  # (B*T, 3, c, c) -> (B, F)
            else:
                # one pass through the shared lower SCL: (B + B*T, 3, c, c), one set of BatchNorm statistics
                lower = self.lower(torch.cat([appearance, motion_frames], dim=0))
                batch = lower.shape[0] // (1 + clip_length)
                spatial = self.spatial(lower[:batch])  # (B, C4, s, s) -> (B, F)
                temporal = self.temporal(lower[batch:])  # (B*T, C4, s, s) -> (B, F)
            if drop_spatial is not None:
                spatial = spatial * (~drop_spatial).to(spatial.dtype)[:, None]
            fused_in = torch.cat([spatial, temporal], dim=1)  # (B, 2F)
            return FstCNFeatures(spatial, temporal, self.fusion(fused_in))
        if self.spatial is not None:
            spatial = self.spatial(self.lower(appearance))
            return FstCNFeatures(spatial, None, self.fusion(spatial))
        assert self.temporal is not None
        temporal = self.temporal(self.lower(motion_frames))
        return FstCNFeatures(None, temporal, self.fusion(temporal))

    def forward(self, appearance: Tensor, motion: Tensor, drop_spatial: Tensor | None = None) -> Tensor:
        """appearance (B, 3, c, c), motion (B, T, 3, c, c) -> logits (B, num_classes); `drop_spatial` as
        in `features` (training only)."""
        return self.classifier(self.features(appearance, motion, drop_spatial).fused)

    def frame_logits(self, frames: Tensor) -> Tensor:
        """Auxiliary classifier on the lower SCL (stage 1): frames (B, 3, c, c) -> logits (B, num_classes)."""
        crop = self.config.crop_size
        if frames.dim() != 4 or tuple(frames.shape[1:]) != (3, crop, crop):
            raise ValueError(f"expected frames (B, 3, {crop}, {crop}), got {tuple(frames.shape)}")
        return self.aux_classifier(self.lower(frames))

    def exported_parameters(self) -> Iterator[nn.Parameter]:
        """The parameters of the exported network: everything but the auxiliary classifier."""
        for name, parameter in self.named_parameters():
            if not name.startswith("aux_classifier."):
                yield parameter

    def num_exported_parameters(self) -> int:
        return sum(parameter.numel() for parameter in self.exported_parameters())


def _init_weights(model: nn.Module) -> None:
    """He init for convs (ReLU everywhere), unit BN, PyTorch's default for FCs; P keeps its identity."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


# ----------------------------------------------------------------------------------------------------------
# Introspection: per-layer output shapes, parameters and multiply-accumulates (used by `fstcn info`).


@dataclass(frozen=True)
class LayerRow:
    name: str
    kind: str
    output_shape: tuple[int, ...]
    parameters: int  # owned directly by this layer
    macs: int  # multiply-accumulates for the given batch (convs, FCs, P only)


_SUMMARY_TYPES = (
    nn.Conv2d,
    nn.BatchNorm2d,
    nn.LocalResponseNorm,
    nn.MaxPool2d,
    nn.Linear,
    TPOperator,
    TemporalConvLayer,
)


def layer_summary(model: FstCN, batch_size: int = 1, device: str | torch.device = "cpu") -> list[LayerRow]:
    """Run one dummy forward (eval mode, no grad) and record every main layer's output shape.

    Works on the meta device (`device="meta"` with a model built under `torch.device("meta")`), which
    gives shapes without allocating the paper preset's 0.8 GB of weights.
    """
    rows: list[LayerRow] = []
    names = {module: name for name, module in model.named_modules()}

    def hook(module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> None:
        own = sum(p.numel() for p in module.parameters(recurse=False))
        if isinstance(module, TemporalConvLayer):
            own = 0  # its convs report their own parameters
        rows.append(
            LayerRow(
                names[module],
                type(module).__name__,
                tuple(output.shape),
                own,
                _macs(module, inputs[0], output),
            )
        )

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _SUMMARY_TYPES)]
    crop, clip_length = model.config.crop_size, model.config.clip_length
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(
                torch.zeros(batch_size, 3, crop, crop, device=device),
                torch.zeros(batch_size, clip_length, 3, crop, crop, device=device),
            )
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return rows


def _macs(module: nn.Module, x: Tensor, y: Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        kernel = module.kernel_size[0] * module.kernel_size[1]
        return y.numel() * module.in_channels // module.groups * kernel
    if isinstance(module, nn.Linear):
        return y.numel() * module.in_features
    if isinstance(module, TPOperator):
        return y.numel() * module.P.shape[1]
    return 0


# ----------------------------------------------------------------------------------------------------------
# Builders.


def _fstcn(config: FstCNConfig, num_classes: int) -> FstCN:
    return FstCN(config, num_classes)


def fstcn(*, preset: str = "small", num_classes: int = 10, **overrides: Any) -> FstCN:
    """FstCN from "Human Action Recognition using Factorized Spatio-Temporal Convolutional Networks"
    (Sun, Jia, Yeung, Shi, ICCV 2015, https://arxiv.org/abs/1510.00562).

    Args:
        preset: "paper" (docs/design.md, "Network", exactly; crop 204), "small" (the CPU default, crop
            112) or "tiny" (tests).
        num_classes: size of the classifier (and of the auxiliary frame classifier).
        **overrides: fields of `fstcn.core.presets.FstCNConfig` to change, e.g. ``paths="spatial"`` for the
            paper's control experiment or ``clip_length=7``.

    Returns:
        An `FstCN` in training mode with freshly initialised weights.
    """
    return _fstcn(get_config(preset, **overrides), num_classes)

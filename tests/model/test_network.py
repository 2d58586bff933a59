"""The FstCN network: paper shapes and parameter count, the T-P operator, presets, paths, batch size 1."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from fstcn.core.meta import SamplingParams
from fstcn.core.presets import PRESETS, FstCNConfig, get_config
from fstcn.model.network import FstCN, TPOperator, fstcn, layer_summary

torch.set_num_threads(1)

PAPER_BASE_PARAMETERS = 206_723_520  # module docstring: everything but the classifier
PAPER_CLASSIFIER_PER_CLASS = 2049  # 2048 weights + 1 bias


def tiny_inputs(
    batch: int, config: FstCNConfig | None = None, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    config = config or PRESETS["tiny"]
    generator = torch.Generator().manual_seed(seed)
    crop, clip_length = config.crop_size, config.clip_length
    appearance = torch.randn(batch, 3, crop, crop, generator=generator)
    motion = torch.randn(batch, clip_length, 3, crop, crop, generator=generator)
    return appearance, motion


def tiny_model(**overrides: object) -> FstCN:
    torch.manual_seed(0)
    return fstcn(preset="tiny", num_classes=5, **overrides).eval()


@pytest.mark.parametrize("num_classes", [10, 101])
def test_paper_preset_shapes_and_parameter_count(num_classes: int) -> None:
    with torch.device("meta"):
        model = fstcn(preset="paper", num_classes=num_classes)
    rows = {row.name: row.output_shape for row in layer_summary(model, device="meta")}
    frames = 1 + 5  # appearance + l_t V_diff frames through the shared lower SCL
    assert rows["lower.conv1.conv"] == (frames, 96, 102, 102)
    assert rows["lower.conv1.lrn"] == (frames, 96, 102, 102)
    assert rows["lower.pool1"] == (frames, 96, 50, 50)
    assert rows["lower.conv2.conv"] == (frames, 256, 25, 25)
    assert rows["lower.pool2"] == (frames, 256, 12, 12)
    assert rows["lower.conv3.conv"] == (frames, 512, 12, 12)
    assert rows["lower.conv4.conv"] == (frames, 512, 12, 12)
    assert rows["spatial.branch.pool"] == (1, 128, 4, 4)
    assert rows["spatial.fc.0"] == (1, 4096)
    assert rows["spatial.fc.3"] == (1, 2048)
    assert rows["temporal.branch.pool"] == (5, 128, 4, 4)
    assert rows["temporal.tp"] == (1, 16, 128, 5)
    assert rows["temporal.tcl.branches.0.0"] == (1, 32, 128, 5)
    assert rows["temporal.tcl.branches.1.0"] == (1, 32, 128, 5)
    assert rows["temporal.tcl"] == (1, 64, 128, 5)
    assert rows["temporal.fc.0"] == (1, 4096)
    assert rows["temporal.fc.3"] == (1, 2048)
    assert rows["fusion.0"] == (1, 2048)
    assert rows["classifier"] == (1, num_classes)
    assert model.temporal is not None and tuple(model.temporal.tp.P.shape) == (128, 128)
    expected = PAPER_BASE_PARAMETERS + PAPER_CLASSIFIER_PER_CLASS * num_classes
    assert model.num_exported_parameters() == expected
    aux = sum(p.numel() for p in model.aux_classifier.parameters())
    assert sum(p.numel() for p in model.parameters()) == expected + aux
    # the paper preset uses LRN, no BatchNorm anywhere
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_tiny_forward_features_and_frame_logits_at_batch_one_in_train_and_eval() -> None:
    model = tiny_model()
    config = model.config
    for training in (True, False):
        model.train(training)
        for batch in (1, 3):
            appearance, motion = tiny_inputs(batch)
            logits = model(appearance, motion)
            assert logits.shape == (batch, 5)
            assert torch.isfinite(logits).all()
            features = model.features(appearance, motion)
            assert features.spatial is not None and features.spatial.shape == (batch, config.fc_dims[-1])
            assert features.temporal is not None and features.temporal.shape == (batch, config.fc_dims[-1])
            assert features.fused.shape == (batch, config.fusion_dim)
            assert model.frame_logits(appearance).shape == (batch, 5)


def test_batch_rows_are_independent_in_eval_mode() -> None:
    model = tiny_model()
    appearance, motion = tiny_inputs(4)
    with torch.no_grad():
        together = model(appearance, motion)
        alone = torch.cat([model(appearance[i : i + 1], motion[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


def test_tp_operator_reshape_puts_positions_on_channels_and_time_last() -> None:
    operator = TPOperator(channels=3, clip_length=2)
    x = torch.arange(2 * 2 * 3 * 2 * 2, dtype=torch.float32).reshape(4, 3, 2, 2)  # (B*T, C, H, W), B = 2
    y = operator(x)
    assert y.shape == (2, 4, 3, 2)  # (B, H*W, C, T)
    for b in range(2):
        for t in range(2):
            for c in range(3):
                for h in range(2):
                    for w in range(2):
                        assert y[b, h * 2 + w, c, t] == x[b * 2 + t, c, h, w]
    with torch.no_grad():
        operator.P.copy_(torch.tensor([[0.0, 1, 0], [0, 0, 1], [2, 0, 0]]))
    z = operator(x)
    torch.testing.assert_close(z[:, :, 0], y[:, :, 1])
    torch.testing.assert_close(z[:, :, 2], 2 * y[:, :, 0])


def test_p_is_on_the_path() -> None:
    model = tiny_model()
    assert model.temporal is not None
    appearance, motion = tiny_inputs(2)
    before = model(appearance, motion)
    with torch.no_grad():
        model.temporal.tp.P.mul_(torch.linspace(0.2, 3.0, model.config.branch_width))
    assert not torch.allclose(before, model(appearance, motion))
    model.train()
    model.zero_grad()
    model(appearance, motion).logsumexp(1).sum().backward()
    grad = model.temporal.tp.P.grad
    assert grad is not None and grad.abs().sum() > 0


def test_temporal_order_of_motion_frames_matters() -> None:
    # sit_down vs stand_up: only the order of the V_diff frames tells them apart
    model = tiny_model()
    appearance, motion = tiny_inputs(2)
    with torch.no_grad():
        assert not torch.allclose(model(appearance, motion), model(appearance, motion.flip(1)), atol=1e-6)


def test_single_path_variants_ignore_the_other_input() -> None:
    appearance, motion = tiny_inputs(2)
    other_appearance, other_motion = tiny_inputs(2, seed=1)
    spatial = tiny_model(paths="spatial")
    temporal = tiny_model(paths="temporal")
    both = tiny_model()
    assert spatial.temporal is None and temporal.spatial is None
    with torch.no_grad():
        torch.testing.assert_close(spatial(appearance, motion), spatial(appearance, other_motion))
        torch.testing.assert_close(temporal(appearance, motion), temporal(other_appearance, motion))
        assert spatial.features(appearance, motion).temporal is None
        assert temporal.features(appearance, motion).spatial is None
    assert spatial.num_exported_parameters() < both.num_exported_parameters()
    assert temporal.num_exported_parameters() < both.num_exported_parameters()


def test_input_shapes_are_validated() -> None:
    model = tiny_model()
    appearance, motion = tiny_inputs(2)
    with pytest.raises(ValueError, match="appearance"):
        model(appearance[:, :, :16], motion)
    with pytest.raises(ValueError, match="motion"):
        model(appearance, motion[:, :4])
    with pytest.raises(ValueError, match="motion"):
        model(appearance, motion[:, 0])
    with pytest.raises(ValueError, match="frames"):
        model.frame_logits(motion)


def test_presets_configs_and_overrides() -> None:
    assert set(PRESETS) == {"paper", "small", "tiny"}
    small = PRESETS["small"]
    assert (small.crop_size, small.resize_short, small.norm) == (112, 128, "batch")
    assert PRESETS["paper"].norm == "lrn" and PRESETS["paper"].feature_size == 4
    assert PRESETS["tiny"].feature_size == 2  # H*W = 4 > 1, so the T-P reshape is exercised by the tests
    assert PRESETS["paper"].temporal_feature_size == 4  # the paper: Pool(3, 3) in both branches
    assert (small.feature_size, small.temporal_feature_size) == (2, 6)  # small: no pool before T-P
    assert small.sampling == SamplingParams(clip_length=5, stride=5, diff_offset=9, num_clips=5, ref_fps=25.0)
    for config in PRESETS.values():
        assert FstCNConfig.from_dict(config.to_dict()) == config
        assert (
            FstCNConfig.from_dict(
                {k: list(v) if isinstance(v, tuple) else v for k, v in config.to_dict().items()}
            )
            == config
        )
    longer = get_config("tiny", clip_length=7)
    assert longer.sampling.clip_length == 7
    model = fstcn(preset="tiny", num_classes=3, clip_length=7).eval()
    assert model(*tiny_inputs(1, longer)).shape == (1, 3)
    with pytest.raises(ValueError, match="unknown preset"):
        get_config("huge")
    with pytest.raises(ValueError, match="unknown config overrides"):
        get_config("tiny", widths=3)
    with pytest.raises(ValueError, match="norm"):
        get_config("tiny", norm="group")
    with pytest.raises(ValueError, match="paths"):
        get_config("tiny", paths="neither")
    with pytest.raises(ValueError, match="too small"):
        get_config("paper", crop_size=40, resize_short=40)
    with pytest.raises(ValueError, match="unknown FstCNConfig fields"):
        FstCNConfig.from_dict({**small.to_dict(), "depth": 3})
    with pytest.raises(ValueError, match="num_classes"):
        fstcn(preset="tiny", num_classes=1)
    assert dataclasses.is_dataclass(small)


def test_temporal_pool_sets_the_tcl_input_channels() -> None:
    """The temporal branch's pool decides H*W, the TCL's input channels; the spatial branch keeps its own."""
    unpooled = fstcn(preset="tiny", num_classes=3, temporal_pool=1)
    pooled = fstcn(preset="tiny", num_classes=3)
    side = unpooled.config.lower_size
    assert unpooled.config.temporal_feature_size == side and pooled.config.temporal_feature_size == 2
    assert unpooled.temporal is not None and pooled.temporal is not None
    assert unpooled.temporal.tcl.branches[0][0].in_channels == side * side
    assert pooled.temporal.tcl.branches[0][0].in_channels == 4
    assert unpooled.spatial is not None and pooled.spatial is not None
    assert unpooled.spatial.fc[0].in_features == pooled.spatial.fc[0].in_features
    crop = unpooled.config.crop_size
    unpooled.eval()
    logits = unpooled(torch.zeros(1, 3, crop, crop), torch.zeros(1, 5, 3, crop, crop))
    assert logits.shape == (1, 3)
    with pytest.raises(ValueError, match="temporal_pool"):
        get_config("tiny", temporal_pool=0)


def test_dropped_spatial_features_leave_the_fusion_only_the_temporal_path() -> None:
    torch.manual_seed(0)
    model = fstcn(preset="tiny", num_classes=4).eval()
    appearance, motion = torch.randn(2, 3, 32, 32), torch.randn(2, 5, 3, 32, 32)
    with torch.no_grad():
        plain = model.features(appearance, motion)
        dropped = model.features(appearance, motion, torch.tensor([True, False]))
        assert plain.spatial is not None and plain.temporal is not None
        temporal_only = model.fusion(torch.cat([torch.zeros_like(plain.spatial), plain.temporal], dim=1))
    torch.testing.assert_close(dropped.fused[0], temporal_only[0])
    torch.testing.assert_close(dropped.fused[1], plain.fused[1])
    assert not torch.allclose(dropped.fused[0], plain.fused[0])

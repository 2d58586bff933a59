"""Checkpoints: round trip, fp16 storage, resume state, validation, normalisation overrides."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fstcn.core.meta import ModelMeta, SamplingParams
from fstcn.model.checkpoint import build_model_from_checkpoint, load_checkpoint, save_checkpoint
from fstcn.model.network import fstcn

torch.set_num_threads(1)
LABELS = ["a", "b", "c"]


def trained_tiny() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = fstcn(preset="tiny", num_classes=3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss = model(torch.randn(2, 3, 32, 32), torch.randn(2, 5, 3, 32, 32)).logsumexp(1).sum()
    loss.backward()
    optimizer.step()  # BN running stats and optimizer state are no longer the defaults
    return model, optimizer


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(2, 3, 32, 32, generator=generator), torch.randn(2, 5, 3, 32, 32, generator=generator)


def test_round_trip_rebuilds_the_same_network_and_meta(tmp_path: Path) -> None:
    model, optimizer = trained_tiny()
    path = save_checkpoint(
        tmp_path / "sub" / "last.pt",
        model=torch.nn.parallel.DataParallel(model),  # wrappers are unwrapped
        config=model.config,
        labels=LABELS,
        sampling=model.config.sampling,
        epoch=7,
        optimizer=optimizer,
        extra={"out": tmp_path, "scores": np.array([1.0, 2.0]), "best": np.float32(0.5), "note": ("x", 1)},
    )
    checkpoint = load_checkpoint(path)
    assert checkpoint["preset"] == "tiny" and checkpoint["epoch"] == 7 and checkpoint["labels"] == LABELS
    assert checkpoint["sampling"] == {
        "clip_length": 5,
        "stride": 5,
        "diff_offset": 9,
        "num_clips": 5,
        "ref_fps": 25.0,
    }
    assert checkpoint["extra"]["out"] == str(tmp_path) and checkpoint["extra"]["note"] == ["x", 1]
    assert checkpoint["extra"]["best"] == 0.5
    assert torch.equal(checkpoint["extra"]["scores"], torch.tensor([1.0, 2.0], dtype=torch.float64))
    fresh = torch.optim.AdamW(model.parameters(), lr=1e-3)
    fresh.load_state_dict(checkpoint["optimizer"])
    rebuilt, meta = build_model_from_checkpoint(path)
    assert not rebuilt.training
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(*inputs()), model(*inputs()), rtol=0, atol=0)
    assert meta == ModelMeta(
        name="fstcn-tiny",
        version="epoch7",
        preset="tiny",
        labels=tuple(LABELS),
        resize_short=40,
        crop_size=32,
    )
    assert not list(tmp_path.glob("sub/.*tmp"))  # the atomic write left no temp file


def test_half_checkpoint_is_smaller_and_close(tmp_path: Path) -> None:
    model, _ = trained_tiny()
    kwargs = dict(model=model, config=model.config, labels=LABELS, sampling=model.config.sampling, epoch=1)
    full = save_checkpoint(tmp_path / "full.pt", **kwargs)  # type: ignore[arg-type]
    half = save_checkpoint(tmp_path / "half.pt", half=True, **kwargs)  # type: ignore[arg-type]
    assert half.stat().st_size < 0.75 * full.stat().st_size
    assert load_checkpoint(half)["state_dict"]["classifier.weight"].dtype == torch.float16
    rebuilt, _ = build_model_from_checkpoint(half)
    assert rebuilt.classifier.weight.dtype == torch.float32
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(*inputs()), model(*inputs()), rtol=1e-2, atol=1e-2)


def test_normalisation_overrides_from_extra(tmp_path: Path) -> None:
    model, _ = trained_tiny()
    kwargs = dict(model=model, config=model.config, labels=LABELS, sampling=model.config.sampling, epoch=1)
    meta_json = ModelMeta(
        name="n", version="v", preset="tiny", labels=tuple(LABELS), diff_scale=2.0
    ).to_json()
    path = save_checkpoint(
        tmp_path / "n.pt",
        extra={
            "meta": meta_json,
            "normalisation": {"mean": [0.4, 0.45, 0.5]},
            "name": "mine",
            "version": "3",
        },
        **kwargs,  # type: ignore[arg-type]
    )
    _, meta = build_model_from_checkpoint(path)
    assert (meta.mean, meta.std, meta.diff_scale) == ((0.4, 0.45, 0.5), (0.25, 0.25, 0.25), 2.0)
    assert (meta.name, meta.version) == ("mine", "3")


def test_save_and_load_fail_loudly(tmp_path: Path) -> None:
    model, _ = trained_tiny()
    kwargs = dict(model=model, config=model.config, sampling=model.config.sampling, epoch=1)
    with pytest.raises(ValueError, match="labels"):
        save_checkpoint(tmp_path / "x.pt", labels=["a", "b"], **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="clip_length"):
        save_checkpoint(
            tmp_path / "x.pt",
            model=model,
            config=model.config,
            labels=LABELS,
            epoch=1,
            sampling=SamplingParams(clip_length=4),
        )
    with pytest.raises(ValueError, match="plain types"):
        save_checkpoint(tmp_path / "x.pt", labels=LABELS, extra={"f": object()}, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"state_dict": {}}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="missing"):
        load_checkpoint(tmp_path / "partial.pt")

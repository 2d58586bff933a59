"""Synthetic Actions: a deterministic, seeded generator of labelled action videos (docs/design.md, "Data").

skeleton.py (the figure and per-class joint-angle trajectories) -> scene.py (per-video randomisation)
-> render.py (frames, masks, boxes) -> writer.py (PyAV encoding) -> dataset.py (the UCF101 layout).
numpy, Pillow and PyAV only; no torch.
"""

from fstcn.model.synth.dataset import (
    CLASSES,
    GENERATOR_VERSION,
    generate_dataset,
    render_class_video,
    video_seed,
)

__all__ = ["CLASSES", "GENERATOR_VERSION", "generate_dataset", "render_class_video", "video_seed"]

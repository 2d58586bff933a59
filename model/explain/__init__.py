"""Saliency maps of FstCN decisions and how much of them falls on the actor.

- `saliency`: the paper's class-score back-propagation on the clip pair that drives a decision, scored
  through the core's one path with a `fstcn.model.runner.TorchRunner` (`explain_video`,
  `explain_decoded`, `saliency_maps`, `Explanation`);
- `render`: the saliency grid PNG and the JSON reports of `fstcn explain`;
- `measure`: Synthetic Actions figure masks in the model's input geometry, and the share of saliency
  inside them over a split (`measure_saliency_in_masks`).
"""

from fstcn.model.explain.measure import (
    explanation_masks,
    mask_mismatch,
    mask_shares,
    mask_to_crop,
    measure_saliency_in_masks,
    saliency_mask_share,
)
from fstcn.model.explain.render import save_saliency_grid, write_json
from fstcn.model.explain.saliency import (
    DEFAULT_CHECKPOINT,
    SALIENCY_METHODS,
    Explanation,
    explain_decoded,
    explain_video,
    load_explainer,
    resolve_checkpoint,
    saliency_maps,
)

__all__ = [
    "DEFAULT_CHECKPOINT",
    "SALIENCY_METHODS",
    "Explanation",
    "explain_decoded",
    "explain_video",
    "explanation_masks",
    "load_explainer",
    "mask_mismatch",
    "mask_shares",
    "mask_to_crop",
    "measure_saliency_in_masks",
    "resolve_checkpoint",
    "saliency_maps",
    "saliency_mask_share",
    "save_saliency_grid",
    "write_json",
]

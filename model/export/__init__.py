"""ONNX export of a trained FstCN: the model bundle the service and the CLI read (docs/design.md, "Model
file" and "Frames graphs").

One module per job; each imports only the ones listed above it, so there is no import circle:

  verification     the export error, tolerances, and the verified write every graph goes through
  calibration      NAME.border.npz: the shared trunk's border calibration, its data and file format
  plain            NAME.onnx: the network with BatchNorm folded, verified against PyTorch; its twin NAME.pt
  frames           NAME.frames.onnx: the exact crops inside the graph; where the fast graphs live, and
                   how every frames graph is verified
  shared           NAME.trunk.onnx: the shared trunk (`SharedTrunkGraph`) and the layers above its cut
  calibration_fit  fitting that calibration on training videos
  refine           refining it on the exact crops' decisions
  workflow         `export_bundle`: the whole bundle in one call (`fstcn export`, `fstcn bench`)
"""

from fstcn.model.export.plain import ExportResult, export_model
from fstcn.model.export.verification import ExportVerificationError
from fstcn.model.export.workflow import BundleResult, export_bundle

__all__ = ["BundleResult", "ExportResult", "ExportVerificationError", "export_bundle", "export_model"]

"""The torch-free core that training and serving share (docs/design.md, "Layers").

It owns the model file's metadata contract (`meta`, `presets`, `frames_graph`), clip sampling and crops
(`clips`), container lock-down and decoding (`video`), fusion (`fusion`), the request options
(`options`), domain errors without HTTP codes (`errors`), and the one function that scores a decoded video
with any runner (`scoring`). It imports numpy, PyAV and ONNX Runtime only: never torch, never
`fstcn.model` or `fstcn.service` (tests/test_layers.py enforces it).
"""

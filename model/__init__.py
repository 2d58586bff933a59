"""FstCN training package.

This package's `__init__` and the numpy-only modules (`model.meta`, `model.clips`) never import torch:
the service imports them. Everything that needs torch lives in its own modules and is imported there.
"""

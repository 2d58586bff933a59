"""FstCN training package.

The torch side of the project: the network, training, export and analysis. It imports the core
(`fstcn.core`) and never the service.
"""

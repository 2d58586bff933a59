"""The `fstcn` command line: one console script over the training package and the service."""

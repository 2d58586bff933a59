"""CLI test fixtures: `fstcn predict` is checked against the service it mirrors, so the CLI tests use the
service tests' fake contract model and in-process client rather than fixtures of their own."""

from __future__ import annotations

from tests.service.conftest import client, fake_model_path, make_settings

__all__ = ["client", "fake_model_path", "make_settings"]

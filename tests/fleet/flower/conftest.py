"""Fixtures for the deployment tests (the harness lives in tests/flower_deploy.py)."""

from flower_deploy import credentials, deployment

__all__ = ["credentials", "deployment"]

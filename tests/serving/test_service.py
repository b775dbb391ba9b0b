"""The served versions following the registry's aliases, one poll at a time (in-process,
against the real MLflow store)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from fedpilot.serving import Canary, ModelRef, ModelService, ModelStore


def _versions(service: ModelService) -> tuple[str, str | None]:
    routes = service.routes
    canary = routes.canary.model.version if routes.canary is not None else None
    return routes.primary.model.version, canary


def test_a_version_that_cannot_load_is_skipped_and_never_holds_up_a_rollback(
    digits_registry: Any, caplog: pytest.LogCaptureFixture
) -> None:
    name = "digits-broken"
    # Versions 1 and 2 serve; version 3 has no signature.
    sources = [*digits_registry.model_uris, digits_registry.unsigned_uri]
    digits_registry.register(name, sources=sources, champion=2, challenger=1)
    client = digits_registry.client()
    service = ModelService(
        ModelStore(digits_registry.uri), ModelRef.parse(name), Canary("challenger", 50)
    )
    assert _versions(service) == ("2", "1")
    assert service.refresh() is False

    client.set_registered_model_alias(name, "challenger", "3")
    with caplog.at_level(logging.ERROR, logger="fedpilot.serving"):
        assert service.refresh() is False
        assert service.refresh() is False  # tried once, not every poll
    assert _versions(service) == ("2", "1")
    assert [r.getMessage().count("has no signature") for r in caplog.records] == [1]

    # The champion's rollback goes through while the challenger's alias names a dud.
    client.set_registered_model_alias(name, "champion", "1")
    assert service.refresh() is True
    assert _versions(service) == ("1", "1")
    assert service.swaps == 1

    # Named again after a while, a version is tried again.
    client.set_registered_model_alias(name, "challenger", "2")
    assert service.refresh() is True and _versions(service) == ("1", "2")
    client.set_registered_model_alias(name, "challenger", "3")
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="fedpilot.serving"):
        assert service.refresh() is False
    assert len(caplog.records) == 1 and _versions(service) == ("1", "2")


def test_a_pinned_version_without_canary_follows_nothing(digits_registry: Any) -> None:
    service = ModelService(ModelStore(digits_registry.uri), ModelRef.parse("digits/2"))
    assert not service.follows_aliases
    assert _versions(service) == ("2", None)
    assert service.refresh() is False

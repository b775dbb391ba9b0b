"""What the server answers with: the routes to the loaded versions, kept in step with the
registry's aliases by a watcher thread.

A moved alias is followed by loading the new version whole (and trying it) off the
request path, then replacing :attr:`ModelService.routes` in one assignment. Requests in
flight finish on the version they started with; the next ones get the new one. Nothing
fails during a switch, and a rollback (the alias moved back) is just another switch.
"""

from __future__ import annotations

import logging
import threading

from fedpilot.serving.loading import ModelNotFound, ModelStore, ModelUnavailable, ServedModel
from fedpilot.serving.reference import Canary, ModelRef
from fedpilot.serving.routing import Route, Routes

log = logging.getLogger("fedpilot.serving")


class ModelService:
    """The served versions of one registered model, and the watcher that follows its aliases.

    Raises (from the constructor):
        ModelUnavailable: the model, its alias or version, or the canary's alias cannot
            be served now; the message says which and why.
    """

    def __init__(self, store: ModelStore, ref: ModelRef, canary: Canary | None = None) -> None:
        self.store = store
        self.ref = ref
        self.canary = canary
        self.swaps = 0
        self._loaded: dict[str, ServedModel] = {}
        self._failed: set[str | None] = set()
        self._registry_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        primary, canary_version = self._resolve(initial=True)
        self.routes: Routes = self._routes_of(
            self._model(primary), self._model(canary_version) if canary_version else None
        )

    @property
    def follows_aliases(self) -> bool:
        return self.ref.alias is not None or self.canary is not None

    # -- the watcher ------------------------------------------------------------------

    def watch(self, interval: float) -> None:
        """Poll the aliases every ``interval`` seconds in a daemon thread until :meth:`close`."""
        if not self.follows_aliases or self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._watch, args=(interval,), name="fedpilot-alias-watcher", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _watch(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.refresh()
            except Exception:  # the watcher must outlive any one bad poll
                log.exception("alias watcher: refresh failed; serving on unchanged")

    def refresh(self) -> bool:
        """Follow the aliases once; True if the routes changed.

        Each role moves on its own: a version that fails to load is logged once and
        skipped while its alias names it (its role keeps the version it had), so a
        broken challenger never holds up a rollback of the champion.
        """
        try:
            wanted, wanted_canary = self._resolve(initial=False)
        except ModelUnavailable as exc:
            if str(exc) != self._registry_error:
                self._registry_error = str(exc)
                log.error("alias watcher: %s; serving on %s", exc, describe(self.routes))
            return False
        self._registry_error = None
        self._failed &= {wanted, wanted_canary}  # a version named again is tried again
        now = self.routes
        now_canary = now.canary.model if now.canary is not None else None
        primary = self._usable(wanted, now.primary.model)
        canary = None if wanted_canary is None else self._usable(wanted_canary, now_canary)
        if primary is None or (primary is now.primary.model and canary is now_canary):
            return False
        routes = self._routes_of(primary, canary)
        self.routes = routes  # the switch: one reference assignment
        self.swaps += 1
        # Only the versions now routed stay loaded.
        kept = {primary.version} | ({canary.version} if canary is not None else set())
        self._loaded = {v: m for v, m in self._loaded.items() if v in kept}
        log.warning("now serving %s", describe(routes))
        return True

    def _usable(self, version: str, current: ServedModel | None) -> ServedModel | None:
        """Version ``version`` loaded, or ``current`` if it cannot be."""
        if current is not None and current.version == version:
            return current
        if version in self._failed:
            return current
        try:
            return self._model(version)
        except ModelUnavailable as exc:
            self._failed.add(version)
            log.error("alias watcher: %s; serving on %s", exc, describe(self.routes))
            return current

    # -- resolving and loading -----------------------------------------------------------

    def _resolve(self, *, initial: bool) -> tuple[str, str | None]:
        ref = self.ref
        if ref.alias is not None:
            try:
                primary = self.store.version_of(ref.name, ref.alias)
            except ModelNotFound:
                if initial:
                    raise
                # The alias was deleted: keep serving what it named rather than nothing.
                primary = self.routes.primary.model.version
        else:
            assert ref.version is not None
            primary = ref.version
        canary_version = None
        if self.canary is not None:
            try:
                canary_version = self.store.version_of(ref.name, self.canary.alias)
            except ModelNotFound:
                if initial:
                    raise
                # No challenger any more: all traffic to the primary until one is named.
        return primary, canary_version

    def _routes_of(self, primary: ServedModel, canary: ServedModel | None) -> Routes:
        route = Route(primary, self.ref.alias, "primary")
        if canary is None or self.canary is None:
            return Routes(primary=route)
        return Routes(
            primary=route,
            canary=Route(canary, self.canary.alias, "canary"),
            basis_points=self.canary.basis_points,
        )

    def _model(self, version: str) -> ServedModel:
        model = self._loaded.get(version)
        if model is None:
            model = self.store.load(self.ref.name, version)
            self._loaded[version] = model
        return model


def describe(routes: Routes) -> str:
    """``digits version 3 (champion)``, plus the canary and its share."""
    primary = routes.primary
    text = f"{primary.model.name} version {primary.model.version}" + (
        f" ({primary.alias})" if primary.alias else ""
    )
    if routes.canary is not None:
        canary = routes.canary
        text += (
            f", {routes.basis_points / 100:g}% to version {canary.model.version} ({canary.alias})"
        )
    return text

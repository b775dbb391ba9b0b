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
        self._failed: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        primary, canary_version = self._resolve(initial=True)
        self.routes: Routes = self._routes(primary, canary_version)

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

        A version that fails to load is logged once and left alone until its alias
        moves on; the routes stay as they were meanwhile.
        """
        try:
            primary, canary_version = self._resolve(initial=False)
        except ModelUnavailable as exc:
            self._note_failure("registry", str(exc))
            return False
        now = self.routes
        now_canary = now.canary.model.version if now.canary is not None else None
        if (primary, canary_version) == (now.primary.model.version, now_canary):
            return False
        if primary in self._failed or canary_version in self._failed:
            return False
        try:
            routes = self._routes(primary, canary_version)
        except ModelUnavailable as exc:
            failed = primary if primary not in self._loaded else canary_version
            self._note_failure(failed or "?", str(exc))
            return False
        self.routes = routes  # the switch: one reference assignment
        self.swaps += 1
        self._failed.clear()
        # Only the versions now routed stay loaded.
        kept = {routes.primary.model.version}
        if routes.canary is not None:
            kept.add(routes.canary.model.version)
        self._loaded = {v: m for v, m in self._loaded.items() if v in kept}
        log.warning("now serving %s", describe(routes))
        return True

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

    def _routes(self, primary: str, canary_version: str | None) -> Routes:
        route = Route(self._model(primary), self.ref.alias, "primary")
        if canary_version is None or self.canary is None:
            return Routes(primary=route)
        canary = Route(self._model(canary_version), self.canary.alias, "canary")
        return Routes(primary=route, canary=canary, basis_points=self.canary.basis_points)

    def _model(self, version: str) -> ServedModel:
        model = self._loaded.get(version)
        if model is None:
            model = self.store.load(self.ref.name, version)
            self._loaded[version] = model
        return model

    def _note_failure(self, key: str, message: str) -> None:
        if self._failed.get(key) != message:
            self._failed[key] = message
            log.error("alias watcher: %s; serving on %s", message, describe(self.routes))


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

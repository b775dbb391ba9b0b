"""Registry operations on the MLflow Model Registry: register, list, show, promote, roll back.

Aliases: a new version becomes ``challenger``; a promotion that passes the gates moves
``champion`` to it (and drops ``challenger``); a rollback moves ``champion`` back to the
previous champion. The champions so far are kept, oldest first, in the registered model's
tag ``fedpilot.champion_history``. Every action is a tag on the version it concerns and an
event (:data:`~fedpilot.orchestrator.vocabulary.MODEL_REGISTRY_EVENTS`) appended to the
``events.jsonl`` of that version's run, when its run directory is on this machine.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedpilot import audit
from fedpilot.errors import UserError
from fedpilot.model_registry import lineage as lin
from fedpilot.model_registry.gates import GateDecision, GateRules, Measured, judge
from fedpilot.orchestrator.vocabulary import EventType
from fedpilot.rundir import RunDir
from fedpilot.tracking._mlflow_utils import use_tracking_uri
from fedpilot.tracking.event_log import append_event

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY = "fedpilot.champion_history"
REGISTERED_AT, PROMOTED_AT = "fedpilot.registered_at", "fedpilot.promoted_at"
GATE_DECISION, ROLLED_BACK = "fedpilot.gate.decision", "fedpilot.rolled_back"

_logger = logging.getLogger(__name__)


class GateFailed(Exception):
    """A promotion the gates refused; the champion stayed (``fedpilot models`` exits 1)."""

    def __init__(self, promotion: Promotion) -> None:
        super().__init__(promotion.decision.summary())
        self.promotion = promotion


@dataclass(frozen=True)
class Promotion:
    """What ``promote`` decided: the version judged, the champion before, the decision."""

    name: str
    version: str
    champion_before: str | None
    decision: GateDecision
    events_written: bool
    """Whether the gate decision reached the run's ``events.jsonl`` (its run directory is
    on this machine); it is a tag on the version either way."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "champion_before": self.champion_before,
            "champion": self.version if self.decision.passed else self.champion_before,
            "passed": self.decision.passed,
            "checked": list(self.decision.checked),
            "failures": [
                {"rule": f.rule, "value": f.value, "threshold": f.threshold, "message": f.message}
                for f in self.decision.failures
            ],
            "decision": self.decision.summary(),
            "event_logged": self.events_written,
        }


@dataclass(frozen=True)
class VersionInfo:
    """One model version as ``fedpilot models show`` prints it."""

    version: str
    aliases: tuple[str, ...]
    status: str
    created: str
    tags: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "aliases": list(self.aliases),
            "status": self.status,
            "created": self.created,
            "run_id": self.tags.get(lin.RUN_ID),
            "model_round": self.tags.get(lin.MODEL_ROUND),
            "central_metric": self.tags.get(lin.CENTRAL),
            "tags": dict(sorted(self.tags.items())),
        }


@dataclass(frozen=True)
class ModelInfo:
    """A registered model: its versions (newest first), aliases and champion history."""

    name: str
    aliases: dict[str, str]
    champion_history: tuple[str, ...]
    versions: tuple[VersionInfo, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "aliases": dict(sorted(self.aliases.items())),
            "champion_history": list(self.champion_history),
            "versions": [v.to_dict() for v in self.versions],
        }


class ModelRegistry:
    """fedpilot's view of the MLflow Model Registry at ``tracking_uri`` (the runs' store)."""

    def __init__(self, tracking_uri: str) -> None:
        from mlflow import MlflowClient

        self.uri = tracking_uri
        self.client: MlflowClient = MlflowClient(
            tracking_uri=tracking_uri, registry_uri=tracking_uri
        )

    # -- a run's model -----------------------------------------------------------------

    def register(
        self, name: str, *, model_id: str, lineage: lin.Lineage, rules: GateRules
    ) -> ModelVersion:
        """A new version of ``name`` from the LoggedModel ``model_id``, aliased challenger."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        tags = {**lineage.tags(), **rules.tags(), REGISTERED_AT: _now()}
        # MLflow resolves the models:/ source through the global tracking URI.
        with use_tracking_uri(self.uri):
            version = self.client.create_model_version(
                name,
                source=f"models:/{model_id}",
                run_id=lineage.mlflow_run_id,
                tags=tags,
                model_id=model_id,
            )
        self.client.set_registered_model_alias(name, CHALLENGER, version.version)
        self._event(
            tags,
            EventType.MODEL_REGISTERED,
            model=name,
            version=str(version.version),
            alias=CHALLENGER,
            model_round=lineage.model_round,
            central_metric=lineage.measured.central,
            worst_learner_metric=lineage.measured.worst_learner,
        )
        return version

    # -- reading -------------------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(m.name for m in self.client.search_registered_models(max_results=1000))

    def show(self, name: str) -> ModelInfo:
        """The registered model ``name``.

        Raises:
            UserError: no registered model of that name.
        """
        model = self._model(name)
        versions = self.client.search_model_versions(f"name = '{_quoted(name)}'")
        aliases = {str(k): str(v) for k, v in (model.aliases or {}).items()}
        by_version: dict[str, list[str]] = {}
        for alias, number in aliases.items():
            by_version.setdefault(number, []).append(alias)
        infos = sorted(
            (
                VersionInfo(
                    version=str(v.version),
                    aliases=tuple(sorted(by_version.get(str(v.version), []))),
                    status=str(v.status),
                    created=_iso_ms(v.creation_timestamp),
                    tags=dict(v.tags or {}),
                )
                for v in versions
            ),
            key=lambda v: int(v.version),
            reverse=True,
        )
        return ModelInfo(name, aliases, _history(model.tags), tuple(infos))

    # -- alias moves -------------------------------------------------------------------

    def promote(self, name: str, version: str | None = None) -> Promotion:
        """Moves ``champion`` to ``version`` (default: the challenger) if its gates pass.

        Raises:
            UserError: no such model or version, no challenger, already the champion, or
                a version without fedpilot's gate rules.
            GateFailed: a gate failed; the champion stayed.
        """
        model = self._model(name)
        aliases = {str(k): str(v) for k, v in (model.aliases or {}).items()}
        if version is None:
            version = aliases.get(CHALLENGER)
            if version is None:
                raise UserError(
                    f"model {name!r} has no {CHALLENGER} to promote (a completed run registers "
                    "one); give --version"
                )
        challenger = self._version(name, version)
        version = str(challenger.version)  # "03" is version 3: compared with aliases below
        champion_version = aliases.get(CHAMPION)
        if champion_version == version:
            raise UserError(f"version {version} of {name!r} is already the {CHAMPION}")
        tags = dict(challenger.tags or {})
        rules = GateRules.from_tags(tags)
        if rules is None:
            raise UserError(
                f"version {version} of {name!r} has no fedpilot gate rules (tags "
                "fedpilot.gate.*): it was not registered by a fedpilot run"
            )
        champion = self._champion_measure(name, champion_version, rules)
        decision = judge(rules, lin.measured(tags), champion)
        self.client.set_model_version_tag(
            name, version, GATE_DECISION, f"{_now()}: {decision.summary()}"[:5000]
        )
        written = self._event(
            tags,
            EventType.GATE_DECIDED,
            model=name,
            version=version,
            champion=champion_version,
            passed=decision.passed,
            checked=list(decision.checked),
            failures=[
                {"rule": f.rule, "value": f.value, "threshold": f.threshold}
                for f in decision.failures
            ],
        )
        promotion = Promotion(name, version, champion_version, decision, written)
        if not decision.passed:
            raise GateFailed(promotion)
        self.client.set_registered_model_alias(name, CHAMPION, version)
        if aliases.get(CHALLENGER) == version:
            self.client.delete_registered_model_alias(name, CHALLENGER)
        history = [*_history(model.tags), version]
        self.client.set_registered_model_tag(name, HISTORY, json.dumps(history))
        self.client.set_model_version_tag(name, version, PROMOTED_AT, _now())
        self._event(
            tags, EventType.MODEL_PROMOTED, model=name, version=version, previous=champion_version
        )
        return promotion

    def rollback(self, name: str) -> tuple[str, str]:
        """Moves ``champion`` back to the previous champion; returns (from, to) versions.

        Raises:
            UserError: no such model, no champion, or no previous champion.
        """
        model = self._model(name)
        aliases = {str(k): str(v) for k, v in (model.aliases or {}).items()}
        current = aliases.get(CHAMPION)
        if current is None:
            raise UserError(f"model {name!r} has no {CHAMPION} to roll back")
        history = list(_history(model.tags))
        # The champion history ends with the current champion; an alias moved by hand
        # outside fedpilot is rolled back to the last champion fedpilot recorded, and a
        # champion version deleted since is passed over.
        while history and (history[-1] == current or not self._exists(name, history[-1])):
            history.pop()
        if not history:
            raise UserError(
                f"model {name!r} has no previous {CHAMPION} to roll back to "
                f"(version {current} is the first still registered)"
            )
        previous = history[-1]
        self.client.set_registered_model_alias(name, CHAMPION, previous)
        self.client.set_registered_model_tag(name, HISTORY, json.dumps(history))
        stamp = _now()
        self.client.set_model_version_tag(
            name, current, ROLLED_BACK, f"{stamp}: {CHAMPION} back to version {previous}"
        )
        self.client.set_model_version_tag(name, previous, PROMOTED_AT, f"{stamp} (rollback)")
        demoted = dict(self._version(name, current).tags or {})
        self._event(
            demoted, EventType.CHAMPION_ROLLED_BACK, model=name, version=current, to=previous
        )
        return current, previous

    # -- helpers -----------------------------------------------------------------------

    def _model(self, name: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_registered_model(name)
        except MlflowException:
            known = self.names()
            listed = ", ".join(known[:20]) if known else "none"
            raise UserError(
                f"no registered model named {name!r} in {self.uri} (registered: {listed})"
            ) from None

    def _version(self, name: str, version: str) -> ModelVersion:
        from mlflow.exceptions import MlflowException

        if not version.isdigit() or int(version) < 1:
            raise UserError(f"a model version is an integer >= 1, got version={version!r}")
        try:
            return self.client.get_model_version(name, version)
        except MlflowException:
            raise UserError(f"model {name!r} has no version {version}") from None

    def _exists(self, name: str, version: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_model_version(name, version)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return False
            raise UserError(f"cannot read version {version} of {name!r}: {exc.message}") from None
        return True

    def _champion_measure(
        self, name: str, version: str | None, rules: GateRules
    ) -> Measured | None:
        if version is None:
            return None
        tags = dict(self._version(name, version).tags or {})
        theirs = tags.get("fedpilot.gate.metric")
        if theirs is not None and theirs != rules.metric:
            raise UserError(
                f"the {CHAMPION} (version {version}) was measured by {theirs!r}, the "
                f"challenger's gates use {rules.metric!r}: they cannot be compared"
            )
        return lin.measured(tags)

    def _event(self, tags: dict[str, str], event: EventType, **fields: Any) -> bool:
        """Appends ``event`` to the log of the run the version came from, if it is here."""
        where = tags.get(lin.RUN_DIR)
        run_dir = RunDir(Path(where)) if where else None
        if run_dir is None or not run_dir.path.is_dir():
            _logger.info("%s not written to a run's log: run directory %s not here", event, where)
            return False
        written = append_event(run_dir.events, event, run_id=tags.get(lin.RUN_ID), **fields)
        try:  # and to the run's signed audit log: ModelPromoted → model_promoted
            kind = re.sub(r"(?<!^)(?=[A-Z])", "_", str(event)).lower()
            audit.append(run_dir.path, kind, {"run_id": tags.get(lin.RUN_ID), **fields})
        except UserError as exc:
            _logger.warning("%s not written to the run's audit log: %s", event, exc)
            return False
        return written


def _history(tags: Any) -> tuple[str, ...]:
    try:
        value = json.loads((tags or {}).get(HISTORY, "[]"))
    except ValueError:
        return ()
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _quoted(name: str) -> str:
    return name.replace("'", "\\'")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _iso_ms(millis: int | None) -> str:
    if not millis:
        return ""
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="seconds")


__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "GateFailed",
    "ModelInfo",
    "ModelRegistry",
    "Promotion",
    "VersionInfo",
]

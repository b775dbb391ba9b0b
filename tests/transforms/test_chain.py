"""The chain a spec gives, its order, and each transform's own slice of a learner's state."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import APPS_DIR
from fedpilot.data import ArrayDataset
from fedpilot.errors import SpecError
from fedpilot.spec import validate_spec
from fedpilot.transforms import (
    Exchange,
    LearnerContext,
    LearnerOutput,
    LocalWork,
    UpdateTransform,
    Work,
    answer_query,
    build_transforms,
    run_chain,
    state_key,
    transforms_for,
)
from fedpilot.types import LearnerState


def spec(tmp_path: Path, **changes: object):  # type: ignore[no-untyped-def]
    raw = {
        "name": "chain",
        "task": {"name": "digits-mlp"},
        "data": {"num_learners": 4},
        "output_dir": str(tmp_path),
        "base_dir": str(APPS_DIR),
        **changes,
    }
    return validate_spec(raw)


def names(tmp_path: Path, **changes: object) -> list[str]:
    return [t.name for t in transforms_for(spec(tmp_path, **changes))]


def test_chain_is_sysmetrics_then_the_strategys_then_the_users(tmp_path: Path) -> None:
    assert names(tmp_path) == ["sysmetrics", "label_flip"]
    fedprox = transforms_for(spec(tmp_path, strategy={"name": "fedprox", "mu": 0.3}))
    assert [(t.name, t.params) for t in fedprox] == [
        ("sysmetrics", {}),
        ("proximal", {"mu": 0.3}),
        ("label_flip", {}),
    ]
    assert names(
        tmp_path,
        strategy={"name": "scaffold"},
        transforms=["usertransforms:RoundCounter"],
    ) == ["sysmetrics", "scaffold", "label_flip", "usertransforms:RoundCounter"]
    built = build_transforms(
        spec(
            tmp_path,
            transforms=[{"name": "usertransforms:RoundCounter", "params": {"shrink": 0.5}}],
        )
    )
    assert [state_key(t) for t in built] == ["sysmetrics", "label_flip", "round_counter"]
    assert built[2].shrink == 0.5  # type: ignore[attr-defined]


def test_bad_transform_entries_are_spec_errors_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"`transforms.name` must be one of .*got name='nope'"):
        build_transforms(spec(tmp_path, transforms=["nope"]))
    with pytest.raises(SpecError, match=r"`transforms\[0\].params` do not fit"):
        build_transforms(spec(tmp_path, transforms=[{"name": "proximal", "params": {"nu": 1}}]))
    with pytest.raises(SpecError, match=r"`transforms\[0\].params`: proximal refused"):
        build_transforms(spec(tmp_path, transforms=[{"name": "proximal", "params": {"mu": -1}}]))
    with pytest.raises(SpecError, match="each transform once"):
        build_transforms(spec(tmp_path, strategy={"name": "fedprox"}, transforms=["proximal"]))


class Tagger(UpdateTransform):
    """Records the order it ran in and counts its calls in its own state."""

    def __init__(self, tag: str, log: list[str]) -> None:
        self.tag, self.log = tag, log

    @property  # type: ignore[override]
    def name(self) -> str:  # type: ignore[override]
        return self.tag

    actions = ("calls",)

    def on_learner(
        self, work: LocalWork, run: Work, *, state: LearnerState, ctx: LearnerContext
    ) -> LearnerOutput:
        assert set(state) <= {"calls"}, state  # only its own slice, unprefixed
        calls = int(state["calls"][0][0]) + 1 if "calls" in state else 1
        state["calls"] = [np.array([calls])]
        self.log.append(f"{self.tag}>")
        out = run(work)
        self.log.append(f"<{self.tag}")
        return out

    def on_query(
        self, action: str, request: Exchange, *, state: LearnerState, ctx: LearnerContext
    ) -> Exchange:
        return Exchange(metrics={"calls": float(state["calls"][0][0])})


def test_outermost_runs_first_and_each_sees_only_its_own_state() -> None:
    log: list[str] = []
    chain = [Tagger("a", log), Tagger("b", log)]
    ctx = LearnerContext(learner="0", round=1, kind="train", config={})
    data = ArrayDataset(np.zeros((1, 1)), np.zeros(1))

    def task(work: LocalWork) -> LearnerOutput:
        log.append("task")
        return LearnerOutput([], {}, 1)

    state: LearnerState = {"other/x": [np.zeros(1)], "a/calls": [np.array([4])]}
    run_chain(chain, LocalWork("train", [], data, {}), task, state=state, ctx=ctx)
    assert log == ["a>", "b>", "task", "<b", "<a"]
    assert sorted(state) == ["a/calls", "b/calls", "other/x"]
    assert (int(state["a/calls"][0][0]), int(state["b/calls"][0][0])) == (5, 1)
    with pytest.raises(SpecError, match="action 'calls' is declared by both a and b"):
        answer_query(chain, "calls", Exchange(), state=state, ctx=ctx)
    answer = answer_query(chain[:1], "calls", Exchange(), state=state, ctx=ctx)
    assert answer.metrics == {"calls": 5.0}
    with pytest.raises(ValueError, match=r"no transform answers query\.other"):
        answer_query(chain[:1], "other", Exchange(), state=state, ctx=ctx)

"""``--set`` reaches every field of the schema, also in sections a spec does not have."""

from __future__ import annotations

from pathlib import Path

import pytest

from clitools import EXAMPLES, fedpilot
from fedpilot.errors import SpecError
from fedpilot.spec import load_spec
from fedpilot.spec.runtime import FlowerRuntime, LocalRuntime, RayRuntime
from fedpilot.spec.sections import FedAvgStrategy, FedProxStrategy

MNIST1D = EXAMPLES / "mnist1d.yaml"


def test_examples_spec_has_none_of_the_sections_set_below() -> None:
    text = MNIST1D.read_text()
    assert "runtime" not in text and "strategy" not in text and "selection" not in text


def test_a_set_inside_a_missing_tagged_section_gets_the_default_kind() -> None:
    spec = load_spec(MNIST1D, ["runtime.workers=2"])
    assert isinstance(spec.runtime, LocalRuntime) and spec.runtime.workers == 2
    spec = load_spec(MNIST1D, ["runtime.round_timeout=2"])
    assert isinstance(spec.runtime, LocalRuntime) and spec.runtime.round_timeout == 2
    spec = load_spec(MNIST1D, ["runtime.mode=flower"])
    assert isinstance(spec.runtime, FlowerRuntime)
    oort = load_spec(MNIST1D, ["selection.name=oort", "selection.alpha=3"]).selection
    assert oort.name == "oort" and oort.alpha == 3  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "overrides",
    [["strategy.mu=0.5", "strategy.name=fedprox"], ["strategy.name=fedprox", "strategy.mu=0.5"]],
)
def test_the_order_of_sets_does_not_matter(overrides: list[str]) -> None:
    assert load_spec(MNIST1D, overrides).strategy == FedProxStrategy(mu=0.5)


def test_a_key_the_kind_lacks_names_the_field_and_the_kind_that_has_it() -> None:
    with pytest.raises(SpecError) as info:
        load_spec(MNIST1D, ["strategy.mu=0.5"])
    assert info.value.field == "strategy.mu"
    assert "strategy.name=fedavg" in str(info.value)
    assert "set strategy.name=fedprox" in str(info.value)
    with pytest.raises(SpecError, match=r"set runtime\.mode=ray") as info:
        load_spec(MNIST1D, ["runtime.address=auto"])
    assert info.value.field == "runtime.address"
    with pytest.raises(SpecError, match=r"set selection\.name=oort"):
        load_spec(MNIST1D, ["selection.alpha=3"])
    with pytest.raises(SpecError, match=r"no data\.partition kind has it"):
        load_spec(MNIST1D, ["data.partition.sigma=1"])


def test_changing_the_kind_keeps_only_the_keys_the_new_kind_has(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: s\ntask: {name: digits-mlp}\nruntime: {mode: local, workers: 3, torch_threads: 2}\n"
        "strategy: {name: fedprox, mu: 0.3, server_lr: 0.5}\nselection: oort\n"
        "data: {partition: dirichlet(0.5)}\n"
    )
    spec = load_spec(path, ["runtime.mode=ray"])
    assert isinstance(spec.runtime, RayRuntime) and spec.runtime.torch_threads == 2
    spec = load_spec(path, ["strategy.name=fedavg"])
    assert spec.strategy == FedAvgStrategy(server_lr=0.5)
    spec = load_spec(path, ["selection.alpha=4"])  # a shorthand section is entered too
    assert spec.selection.name == "oort" and spec.selection.alpha == 4  # type: ignore[union-attr]
    spec = load_spec(path, ["data.partition.min_size=5"])
    assert (spec.data.partition.alpha, spec.data.partition.min_size) == (0.5, 5)  # type: ignore[union-attr]
    spec = load_spec(path, ["data.partition.kind=shards", "data.partition.per_learner=3"])
    assert spec.data.partition.kind == "shards" and spec.data.partition.per_learner == 3  # type: ignore[union-attr]


def test_every_case_through_the_cli(tmp_path: Path) -> None:
    for overrides, shown in (
        (["runtime.workers=2"], "workers: 2"),
        (["runtime.round_timeout=2"], "round_timeout: 2"),
        (["runtime.mode=flower"], "mode: flower"),
        (["strategy.mu=0.5", "strategy.name=fedprox"], "mu: 0.5"),
    ):
        sets = [arg for o in overrides for arg in ("--set", o)]
        out = fedpilot("spec", "check", str(MNIST1D), "--show", *sets, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert shown in out.stdout
    sets = ["--set", "rounds=1", "--set", "data.num_learners=2", "--set", "tracking.enabled=false"]
    run = fedpilot(
        "run", str(MNIST1D), "--json", "--set", "runtime.workers=2", *sets,
        "--set", "sampling.min_learners=1", "--output-dir", str(tmp_path), cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    flower = fedpilot("run", str(MNIST1D), "--set", "runtime.mode=flower", cwd=tmp_path)
    assert flower.returncode == 2 and "fedpilot server" in flower.stderr
    bad = fedpilot("spec", "check", str(MNIST1D), "--set", "strategy.mu=0.5", cwd=tmp_path)
    assert bad.returncode == 2 and "set strategy.name=fedprox" in bad.stderr
    assert "Traceback" not in bad.stderr

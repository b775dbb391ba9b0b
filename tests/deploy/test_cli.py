"""`fedpilot deploy render` as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from fedpilot.cli import main

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "digits.yaml"
FLOWER_SPEC = ROOT / "examples" / "deploy" / "flower-digits.yaml"
FLOWER_MODE = ["--set", "runtime={mode: flower}"]
Objects = list[dict[str, Any]]


def documents(path: Path) -> Objects:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def test_k8s_from_the_digits_example_in_flower_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], k8s_valid: Callable[[Objects], None]
) -> None:
    code = main(
        ["deploy", "render", "--spec", str(DIGITS), *FLOWER_MODE, "--out", str(tmp_path),
         "--namespace", "fl", "--image", "registry.example/fedpilot:1"]
    )  # fmt: skip
    assert code == 0
    written = tmp_path / "kubernetes.yaml"
    assert str(written) in capsys.readouterr().out.replace("\n", "")
    objects = documents(written)
    k8s_valid(objects)
    kinds = [o["kind"] for o in objects]
    assert kinds == [
        "ConfigMap", "PersistentVolumeClaim", "Service", "Service", "Deployment", "StatefulSet",
    ]  # fmt: skip
    stateful_set = objects[-1]
    assert stateful_set["spec"]["replicas"] == 10  # digits.yaml's data.num_learners
    assert stateful_set["metadata"]["namespace"] == "fl"
    images = {c["image"] for o in objects[-2:] for c in o["spec"]["template"]["spec"]["containers"]}
    assert images == {"registry.example/fedpilot:1"}


def test_both_writes_kubernetes_and_compose(tmp_path: Path) -> None:
    code = main(
        ["deploy", "render", "--spec", str(FLOWER_SPEC), "--out", str(tmp_path),
         "--format", "both", "--learners", "4"]
    )  # fmt: skip
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "compose.yaml", "kubernetes.yaml", "spec.yaml",
    ]  # fmt: skip
    compose = yaml.safe_load((tmp_path / "compose.yaml").read_text())
    assert sorted(compose["services"]) == [
        "learner-0", "learner-1", "learner-2", "learner-3", "mlflow", "server",
    ]  # fmt: skip
    server = compose["services"]["server"]
    assert server["volumes"][0]["source"] == "./spec.yaml"
    # The spec written beside the Compose file is the one the server reads.
    spec = yaml.safe_load((tmp_path / "spec.yaml").read_text())
    assert spec["runtime"]["certificates"] == "/etc/fedpilot/tls"
    assert spec["tracking"]["mlflow_uri"] == "http://mlflow:5000"


def test_helm_values_make_the_chart_render_the_k8s_output(tmp_path: Path) -> None:
    helm = pytest.importorskip("helm_python")
    args = ["--spec", str(FLOWER_SPEC), "--release", "fl", "--mlflow-uri", "http://m:5000"]
    assert main(["deploy", "render", *args, "--out", str(tmp_path), "--format", "helm"]) == 0
    assert main(["deploy", "render", *args, "--out", str(tmp_path), "--format", "k8s"]) == 0
    values = yaml.safe_load((tmp_path / "values.yaml").read_text())
    with helm.Chart.load(str(ROOT / "deploy" / "helm" / "fedpilot")) as chart:
        manifests = chart.render(values, name="fl", namespace="default")
    from_chart = [
        doc
        for path, text in manifests.items()
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc is not None
    ]
    expected = documents(tmp_path / "kubernetes.yaml")

    def key(obj: dict[str, Any]) -> str:
        # Helm's own labels aside, the two must agree on everything.
        lines = yaml.safe_dump(obj).replace("managed-by: Helm", "managed-by: fedpilot")
        return "\n".join(line for line in lines.splitlines() if "helm.sh/chart" not in line)

    assert sorted(map(key, from_chart)) == sorted(map(key, expected))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--spec", str(DIGITS)], "runtime.mode"),
        (["--spec", str(FLOWER_SPEC), "--set", "sampling.fraction=1.5"], "sampling.fraction"),
        (["--spec", "no-such-spec.yaml"], "cannot read spec file"),
        (["--spec", str(FLOWER_SPEC), "--learners", "2"], "at least 3 learners"),
        (["--spec", str(FLOWER_SPEC), "--release", "Bad_Name"], "release"),
    ],
)
def test_bad_input_exits_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["deploy", "render", *args, "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_command_exits_2_and_loads_no_torch(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntask: {name: digits-mlp}\nsampling: {fraction: 1.5}\n")
    script = (
        "import sys; from fedpilot.cli import main; "
        f"code = main(['deploy', 'render', '--spec', {str(FLOWER_SPEC)!r}, '--out', "
        f"{str(tmp_path / 'out')!r}]); "
        "assert 'torch' not in sys.modules and 'flwr' not in sys.modules, 'heavy import'; "
        "sys.exit(code)"
    )
    ok = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    out = subprocess.run(
        [sys.executable, "-m", "fedpilot", "deploy", "render", "--spec", str(bad),
         "--out", str(tmp_path / "bad-out")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert "sampling.fraction" in out.stderr and "Traceback" not in out.stderr

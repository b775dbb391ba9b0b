"""Values for the Helm chart in deploy/helm/fedpilot, from a spec.

The chart and :func:`fedpilot.deploy.render_manifests` make the same objects: given these
values, Helm renders exactly what the renderer returns for the same arguments (Helm's own
labels aside). tests/deploy/test_chart.py renders the chart with Helm's Go code to hold
them to it.
"""

from __future__ import annotations

from typing import Any

from fedpilot.deploy._plan import plan
from fedpilot.deploy.kubernetes import LEARNER_RESOURCES, SERVER_RESOURCES, kube_target
from fedpilot.spec import FederationSpec


def chart_values(
    spec: FederationSpec, *, image: str | None = None, learners: int | None = None, **options: Any
) -> dict[str, Any]:
    """Values (``helm install -f``) that make the chart render what
    :func:`fedpilot.deploy.render_manifests` returns for the same arguments; the release
    name and namespace are Helm's own (``helm install RELEASE -n NAMESPACE``)."""
    target = kube_target(image=image, **options)
    p = plan(spec, learners=learners, mlflow_uri=target.mlflow_uri)
    return {
        "spec": p.spec_text(),
        "image": {
            "server": target.server_image,
            "learner": target.learner_image,
            "pullPolicy": "IfNotPresent",
        },
        "mlflow": {"uri": target.mlflow_uri or ""},
        "tls": {"existingSecret": target.tls_secret, "create": False},
        "learnerKeys": {"existingSecret": target.keys_secret, "create": False},
        "server": {
            "service": {"type": target.service_type},
            "resources": SERVER_RESOURCES,
            "persistence": {
                "enabled": target.runs_storage is not None,
                "size": target.runs_storage or "5Gi",
                "storageClass": target.storage_class or "",
            },
        },
        "learners": {
            "replicas": p.learners,
            "dataFile": target.learner_data or "",
            "gpus": target.learner_gpus,
            "resources": LEARNER_RESOURCES,
            "persistence": {
                "size": target.data_storage,
                "storageClass": target.storage_class or "",
            },
        },
    }

"""Deploying a federation on real machines: Kubernetes objects (the same the Helm chart in
deploy/helm/fedpilot makes), a Docker Compose project, and Helm values, all from a spec.

The Dockerfiles, the chart and the shipped Compose file live in the repository's top-level
``deploy/`` folder; this package renders what depends on a spec.
"""

from fedpilot.deploy.compose import compose_spec_text, render_compose
from fedpilot.deploy.helm import chart_values
from fedpilot.deploy.kubernetes import KubeTarget, render_manifests
from fedpilot.deploy.write import Written, write_compose, write_kubernetes, write_values

__all__ = [
    "KubeTarget",
    "Written",
    "chart_values",
    "compose_spec_text",
    "render_compose",
    "render_manifests",
    "write_compose",
    "write_kubernetes",
    "write_values",
]

"""Kubernetes objects for a spec: the same ones the Helm chart in deploy/helm/fedpilot makes.

A server Deployment (it starts the SuperLink) behind a Service, learners as a StatefulSet
whose pod ordinal picks the data partition, the spec in a ConfigMap. TLS certificates and
learner keys are Secrets the operator creates (deploy/README.md); the objects only name
them, so no private key ever passes through a rendered file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fedpilot.deploy._plan import (
    ALLOW_LIST,
    ALLOW_LIST_DIR,
    HOME,
    KEYS_DIR,
    LEARNER_COMMAND,
    LEARNER_TLS_FILES,
    SERVER_COMMAND,
    SERVER_TLS_FILES,
    SPEC_DIR,
    TLS_DIR,
    UID,
    Plan,
    app_version,
    check_name,
    default_images,
    plan,
    sha256,
)
from fedpilot.errors import UserError
from fedpilot.spec import FederationSpec

# Requests sized for the built-in tasks; the chart's values.yaml has the same defaults.
SERVER_RESOURCES: dict[str, Any] = {
    "requests": {"cpu": "500m", "memory": "1Gi"},
    "limits": {"memory": "4Gi"},
}
LEARNER_RESOURCES: dict[str, Any] = {
    "requests": {"cpu": "1", "memory": "1Gi"},
    "limits": {"memory": "4Gi"},
}
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"  # set on StatefulSet pods since 1.28
INDEX_ENV = "FEDPILOT_LEARNER_INDEX"
SECRET_MODE = 0o440  # owner root, group fsGroup: readable by the fedpilot user only


@dataclass(frozen=True)
class KubeTarget:
    """Where and how a spec is deployed on Kubernetes (everything but the spec)."""

    server_image: str
    learner_image: str
    release: str = "fedpilot"
    namespace: str = "default"
    mlflow_uri: str | None = None
    tls_secret: str = "fedpilot-tls"
    keys_secret: str = "fedpilot-learner-keys"
    service_type: str = "ClusterIP"
    runs_storage: str | None = "5Gi"
    data_storage: str = "1Gi"
    storage_class: str | None = None
    learner_gpus: int = 0
    learner_data: str | None = None

    def __post_init__(self) -> None:
        # The longest name made from the release is the StatefulSet's pods' controller
        # revision label, "<release>-learner-<hash>", which must fit in 63 characters.
        check_name(self.release, "release", max_length=40)
        check_name(self.namespace, "namespace")
        if self.service_type not in ("ClusterIP", "NodePort", "LoadBalancer"):
            raise UserError(
                "`service_type` must be ClusterIP, NodePort or LoadBalancer, "
                f"got service_type={self.service_type!r}"
            )
        if self.learner_gpus < 0:
            raise UserError(f"`learner_gpus` must be >= 0, got learner_gpus={self.learner_gpus}")


def kube_target(
    *,
    image: str | None = None,
    learner_image: str | None = None,
    release: str = "fedpilot",
    namespace: str = "default",
    **options: Any,
) -> KubeTarget:
    """A target from ``render_manifests``' keywords: ``image`` serves both roles unless
    ``learner_image`` is given; with neither, the images deploy/README.md builds."""
    server_default, learner_default = default_images()
    return KubeTarget(
        server_image=image or server_default,
        learner_image=learner_image or image or learner_default,
        release=release,
        namespace=namespace,
        **options,
    )


def render_manifests(
    spec: FederationSpec,
    *,
    image: str | None = None,
    learners: int | None = None,
    namespace: str = "default",
    **options: Any,
) -> list[dict[str, Any]]:
    """The Kubernetes objects that deploy ``spec``, in the order to apply them.

    Args:
        spec: a ``runtime.mode: flower`` spec.
        image: the fedpilot image for the server and (unless ``learner_image``) learners.
        learners: learner pods; default ``spec.data.num_learners``.
        namespace: the namespace every object goes to.
        **options: the other fields of :class:`KubeTarget` (``release``, ``mlflow_uri``,
            ``tls_secret``, ``keys_secret``, ``runs_storage`` …).

    Raises:
        UserError: the spec cannot be deployed (see :func:`fedpilot.deploy._plan.plan`)
            or an option is invalid.
    """
    target = kube_target(image=image, namespace=namespace, **options)
    the_plan = plan(spec, learners=learners, mlflow_uri=target.mlflow_uri)
    return _Renderer(the_plan, target).objects()


class _Renderer:
    def __init__(self, the_plan: Plan, target: KubeTarget) -> None:
        self.plan = the_plan
        self.t = target
        self.name = target.release
        self.spec_text = the_plan.spec_text()

    def objects(self) -> list[dict[str, Any]]:
        objects = [self.spec_config_map()]
        if self.t.runs_storage is not None:
            objects.append(self.runs_claim())
        objects += [
            self.server_service(),
            self.learners_service(),
            self.server_deployment(),
            self.learner_stateful_set(),
        ]
        return objects

    # ------------------------------------------------------------------ metadata

    def labels(self, component: str | None = None) -> dict[str, str]:
        labels = {
            "app.kubernetes.io/name": "fedpilot",
            "app.kubernetes.io/instance": self.name,
            "app.kubernetes.io/version": app_version(),
            "app.kubernetes.io/managed-by": "fedpilot",
        }
        if component is not None:
            labels["app.kubernetes.io/component"] = component
        return labels

    def selector(self, component: str) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": "fedpilot",
            "app.kubernetes.io/instance": self.name,
            "app.kubernetes.io/component": component,
        }

    def metadata(self, name: str, component: str | None = None) -> dict[str, Any]:
        return {"name": name, "namespace": self.t.namespace, "labels": self.labels(component)}

    # ------------------------------------------------------------------ objects

    def spec_config_map(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": self.metadata(f"{self.name}-spec"),
            "data": {"spec.yaml": self.spec_text},
        }

    def runs_claim(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": self.metadata(f"{self.name}-runs", "server"),
            "spec": self._claim_spec(self.t.runs_storage or ""),
        }

    def server_service(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": self.metadata(f"{self.name}-server", "server"),
            "spec": {
                "type": self.t.service_type,
                "selector": self.selector("server"),
                "ports": [
                    {
                        "name": "fleet",
                        "port": self.plan.port,
                        "targetPort": "fleet",
                        "protocol": "TCP",
                    }
                ],
            },
        }

    def learners_service(self) -> dict[str, Any]:
        # Headless: the StatefulSet's governing service; learners serve nothing themselves.
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": self.metadata(f"{self.name}-learners", "learner"),
            "spec": {
                "clusterIP": "None",
                "selector": self.selector("learner"),
                "publishNotReadyAddresses": True,
            },
        }

    def server_deployment(self) -> dict[str, Any]:
        mounts: list[dict[str, Any]] = [{"name": "spec", "mountPath": SPEC_DIR, "readOnly": True}]
        volumes: list[dict[str, Any]] = [
            {"name": "spec", "configMap": {"name": f"{self.name}-spec"}}
        ]
        if self.plan.tls:
            mounts.append({"name": "tls", "mountPath": TLS_DIR, "readOnly": True})
            volumes.append(self._secret_volume("tls", self.t.tls_secret, SERVER_TLS_FILES))
        if self.plan.auth:
            mounts.append(
                {"name": "authorized-learners", "mountPath": ALLOW_LIST_DIR, "readOnly": True}
            )
            volumes.append(
                self._secret_volume("authorized-learners", self.t.keys_secret, (ALLOW_LIST,))
            )
        mounts += [{"name": "home", "mountPath": HOME}, {"name": "tmp", "mountPath": "/tmp"}]
        home: dict[str, Any] = (
            {"persistentVolumeClaim": {"claimName": f"{self.name}-runs"}}
            if self.t.runs_storage is not None
            else {"emptyDir": {}}
        )
        volumes += [{"name": "home", **home}, {"name": "tmp", "emptyDir": {}}]
        probe = {"httpGet": {"path": "/health", "port": "fleet", "scheme": self._scheme()}}
        container = {
            "name": "server",
            "image": self.t.server_image,
            "imagePullPolicy": "IfNotPresent",
            "command": list(SERVER_COMMAND),
            "args": self.plan.server_args(),
            "ports": [{"name": "fleet", "containerPort": self.plan.port, "protocol": "TCP"}],
            "startupProbe": {**probe, "periodSeconds": 5, "failureThreshold": 60},
            "readinessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 3},
            "livenessProbe": {
                **probe,
                "periodSeconds": 20,
                "timeoutSeconds": 5,
                "failureThreshold": 3,
            },
            "resources": SERVER_RESOURCES,
            "securityContext": container_security_context(),
            "volumeMounts": mounts,
        }
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": self.metadata(f"{self.name}-server", "server"),
            "spec": {
                "replicas": 1,
                # One SuperLink owns the runs volume: never two at once.
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": self.selector("server")},
                "template": {
                    "metadata": {
                        "labels": self.labels("server"),
                        "annotations": {"checksum/spec": sha256(self.spec_text)},
                    },
                    "spec": {
                        **_pod_basics(),
                        "containers": [container],
                        "volumes": volumes,
                    },
                },
            },
        }

    def learner_stateful_set(self) -> dict[str, Any]:
        mounts: list[dict[str, Any]] = [{"name": "data", "mountPath": HOME}]
        volumes: list[dict[str, Any]] = []
        if self.plan.tls:
            mounts.append({"name": "tls", "mountPath": TLS_DIR, "readOnly": True})
            volumes.append(self._secret_volume("tls", self.t.tls_secret, LEARNER_TLS_FILES))
        if self.plan.auth:
            # Each pod reads learner-<ordinal>.key; a pod template cannot pick one item per
            # pod, so the pods of one StatefulSet share a trust domain (deploy/README.md).
            mounts.append({"name": "learner-keys", "mountPath": KEYS_DIR, "readOnly": True})
            volumes.append(self._secret_volume("learner-keys", self.t.keys_secret, ()))
        mounts.append({"name": "tmp", "mountPath": "/tmp"})
        volumes.append({"name": "tmp", "emptyDir": {}})
        resources = LEARNER_RESOURCES
        if self.t.learner_gpus:
            limits = {**resources.get("limits", {}), "nvidia.com/gpu": str(self.t.learner_gpus)}
            resources = {**resources, "limits": limits}
        index = f"$({INDEX_ENV})"
        container = {
            "name": "learner",
            "image": self.t.learner_image,
            "imagePullPolicy": "IfNotPresent",
            "command": list(LEARNER_COMMAND),
            "args": self.plan.learner_args(
                index, f"{self.name}-server", data_file=self.t.learner_data
            ),
            "env": [
                {
                    "name": INDEX_ENV,
                    "valueFrom": {
                        "fieldRef": {"fieldPath": f"metadata.labels['{POD_INDEX_LABEL}']"}
                    },
                }
            ],
            "resources": resources,
            "securityContext": container_security_context(),
            "volumeMounts": mounts,
        }
        return {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": self.metadata(f"{self.name}-learner", "learner"),
            "spec": {
                "serviceName": f"{self.name}-learners",
                "replicas": self.plan.learners,
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": self.selector("learner")},
                "template": {
                    "metadata": {"labels": self.labels("learner")},
                    "spec": {**_pod_basics(), "containers": [container], "volumes": volumes},
                },
                "volumeClaimTemplates": [
                    {"metadata": {"name": "data"}, "spec": self._claim_spec(self.t.data_storage)}
                ],
            },
        }

    # ------------------------------------------------------------------ parts

    def _scheme(self) -> str:
        return "HTTPS" if self.plan.tls else "HTTP"

    def _claim_spec(self, size: str) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}},
        }
        if self.t.storage_class:
            spec["storageClassName"] = self.t.storage_class
        return spec

    @staticmethod
    def _secret_volume(name: str, secret: str, keys: tuple[str, ...]) -> dict[str, Any]:
        source: dict[str, Any] = {"secretName": secret, "defaultMode": SECRET_MODE}
        if keys:
            source["items"] = [{"key": key, "path": key} for key in keys]
        return {"name": name, "secret": source}


def _pod_basics() -> dict[str, Any]:
    return {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(),
    }


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }

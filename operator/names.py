"""Names and labels of the children (pinned in docs/contracts.md)."""

from __future__ import annotations

from typing import Literal

Pool = Literal["dedicated", "spot"]
POOLS: tuple[Pool, ...] = ("dedicated", "spot")

FIELD_MANAGER = "infleet-operator"
MANAGED_BY = "app.kubernetes.io/managed-by"
SERVICE_LABEL = "infleet.io/inferenceservice"
POOL_LABEL = "infleet.io/pool"
CONFIG_HASH = "infleet.io/config-hash"  # on pod templates: a config change rolls the pods
RENDERED_HASH = "infleet.io/rendered-hash"  # on every child: what the operator last applied
# On the router's pods instead of SERVICE_LABEL: they are not the service's replicas, so
# the engines' Service, PDB, NetworkPolicy, status.selector and autoscaler never see them.
ROUTER_LABEL = "infleet.io/router"


def pool_deployment_names(name: str) -> dict[Pool, str]:
    """The Deployment of each pool of InferenceService `name` (the autoscaler uses this)."""
    return {pool: f"{name}-{pool}" for pool in POOLS}


def config_map_name(name: str) -> str:
    return f"{name}-engine"


def router_name(name: str) -> str:
    """The router's Deployment, Service, ConfigMap, PDB and RBAC objects."""
    return f"{name}-router"


def router_labels(name: str) -> dict[str, str]:
    """Labels on the router's pods; also its Deployment's, Service's and PDB's selector."""
    return {MANAGED_BY: "infleet", ROUTER_LABEL: name}


def autoscaler_state_name(name: str) -> str:
    """The ConfigMap that keeps the autoscaling policy's memory across operator restarts."""
    return f"{name}-autoscaler"


def child_labels(name: str) -> dict[str, str]:
    """Labels on every child of InferenceService `name`."""
    return {MANAGED_BY: "infleet", SERVICE_LABEL: name}


def pool_labels(name: str, pool: Pool) -> dict[str, str]:
    """Labels on a pool's Deployment and its pods; also the Deployment's selector."""
    return {**child_labels(name), POOL_LABEL: pool}


def pod_selector(name: str) -> str:
    """The label selector of every pod of the service, as a string (status.selector)."""
    return f"{SERVICE_LABEL}={name}"

"""The NetworkPolicy of a service: its engines admit only what the platform names.

Ingress to the engine pods (egress stays open: the model fetch needs its store):
- the engine port (named `http`) from the peers the platform names (a gateway, namespaces:
  `network.ingressFrom` and the tenant rule's `ingressFrom`) and, unless the platform turns
  it off, from the service's own namespace;
- the same port from Prometheus (scrapes /metrics) and from the operator (its autoscaler
  reads /metrics; LoRA adapters are pushed to the engines), and the lora-sync sidecar's
  port (vLLM, SGLang: adapters are pushed there) from the operator only;
- the engine port from the service's router (operator/router.py), when it has one;
- every port from the service's own pods (replicas of a multi-node group talk to each
  other: NCCL, the engines' own coordination ports).
Anything else, another tenant's namespace included, is refused where the cluster's network
plugin enforces NetworkPolicy.
"""

from __future__ import annotations

from typing import Any

from infleet.operator.lora_names import SYNC_PORT_NAME
from infleet.operator.names import child_labels, router_labels
from infleet.operator.policy import NetworkSettings, TenantRule

Obj = dict[str, Any]
ENGINE_PORT = [{"port": "http", "protocol": "TCP"}]
SYNC_PORT = [{"port": SYNC_PORT_NAME, "protocol": "TCP"}]


def network_policy_spec(
    name: str, network: NetworkSettings, rule: TenantRule | None, router: bool = False
) -> Obj:
    own_pods = {"podSelector": {"matchLabels": child_labels(name)}}
    clients = [*network.ingress_from, *(rule.ingress_from if rule else [])]
    if router:  # the clients' way in: whoever may reach the router reaches the engines
        clients.append({"podSelector": {"matchLabels": router_labels(name)}})
    if network.same_namespace:
        clients.append({"podSelector": {}})
    ingress = [
        {"from": [*network.prometheus, *network.operator], "ports": ENGINE_PORT},
        {"from": network.operator, "ports": SYNC_PORT},
    ]
    if clients:
        ingress.insert(0, {"from": clients, "ports": ENGINE_PORT})
    ingress.append({"from": [own_pods]})
    return {
        "podSelector": {"matchLabels": child_labels(name)},
        "policyTypes": ["Ingress"],
        "ingress": ingress,
    }

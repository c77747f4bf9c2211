"""An independent evaluator of Kubernetes NetworkPolicy ingress, written from the
documentation (concepts/services-networking/network-policies), not from the rendering code.

The rules it encodes:
- a pod is isolated for ingress when a policy in its namespace selects it (podSelector)
  with Ingress in policyTypes (policyTypes left out: Ingress, plus Egress when the policy
  has egress rules); a pod no policy isolates accepts everything;
- an isolated pod accepts a connection when some rule of some policy selecting it allows
  it: `from` absent or empty admits every source, else one peer must match; `ports` absent
  or empty admits every port, else one entry must match (protocol defaults to TCP; a
  named port matches the destination container's port of that name; endPort a range);
- a peer with podSelector only: pods of the policy's own namespace; namespaceSelector
  only: every pod of the matching namespaces; both: matching pods of matching namespaces;
  an empty selector matches everything; ipBlock: the source IP in the CIDR, not in except;
- namespaces carry the label kubernetes.io/metadata.name = their name.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)  # container port name -> number
    ip: str = "10.0.0.1"
    namespace_labels: dict[str, str] = field(default_factory=dict)

    def ns_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace, **self.namespace_labels}


def selects(selector: Obj | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _peer(peer: Obj, policy_namespace: str, src: Pod) -> bool:
    if "ipBlock" in peer:
        ip = ipaddress.ip_address(src.ip)
        block = peer["ipBlock"]
        if ip not in ipaddress.ip_network(block["cidr"]):
            return False
        return not any(ip in ipaddress.ip_network(e) for e in block.get("except") or [])
    ns_sel, pod_sel = peer.get("namespaceSelector"), peer.get("podSelector")
    if ns_sel is None:
        in_namespace = src.namespace == policy_namespace
    else:
        in_namespace = selects(ns_sel, src.ns_labels())
    return in_namespace and (pod_sel is None or selects(pod_sel, src.labels))


def _port(entry: Obj, dst: Pod, port: int, protocol: str) -> bool:
    if entry.get("protocol", "TCP") != protocol:
        return False
    want = entry.get("port")
    if want is None:
        return True
    if isinstance(want, str):
        return dst.ports.get(want) == port
    return want <= port <= entry.get("endPort", want)


def _ingress_types(policy: Obj) -> bool:
    types = policy["spec"].get("policyTypes")
    return "Ingress" in types if types else True


def allowed(policies: list[Obj], src: Pod, dst: Pod, port: int, protocol: str = "TCP") -> bool:
    """Whether `src` may open a connection to `dst` on `port`."""
    isolating = [
        p
        for p in policies
        if p["metadata"]["namespace"] == dst.namespace
        and selects(p["spec"]["podSelector"], dst.labels)
        and _ingress_types(p)
    ]
    if not isolating:
        return True
    for policy in isolating:
        for rule in policy["spec"].get("ingress") or []:
            peers, ports = rule.get("from") or [], rule.get("ports") or []
            peer_ok = not peers or any(
                _peer(peer, policy["metadata"]["namespace"], src) for peer in peers
            )
            port_ok = not ports or any(_port(e, dst, port, protocol) for e in ports)
            if peer_ok and port_ok:
                return True
    return False

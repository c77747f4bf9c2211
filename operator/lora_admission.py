"""Whether a LoRAAdapter may attach to its InferenceService: pure decisions, no I/O.

Each refusal is a `Problem` (the adapter's Ready=False / Degraded=True reason and
message); a refused adapter is never in the service's set, so it touches nothing else.
Checks that need the artifact (ArtifactUnreachable, InvalidAdapter, RankTooLarge for a
rank read from the file) are in operator/lora_artifact.py; BaseModelMismatch comes from
the first engine that checks the adapter against the base it serves
(operator/lora_reconcile.py).
"""

from __future__ import annotations

from collections.abc import Iterable

from infleet.api import InferenceService
from infleet.api.lora_adapter import LoRAAdapter
from infleet.operator.engines import ENGINES
from infleet.operator.model_source import resolve_model
from infleet.operator.status import Problem

Key = tuple[str, str]  # (namespace, name)


def admits_namespace(isvc: InferenceService, tenant: str, labels: dict[str, str] | None) -> bool:
    """The service's own namespace, a listed one, or one its selector matches."""
    lora = isvc.spec.engine.lora
    if tenant == isvc.namespace or tenant in lora.allowed_namespaces:
        return True
    return lora.namespace_selector is not None and lora.namespace_selector.matches(labels or {})


def _age(adapter: LoRAAdapter) -> tuple[str, str, str]:
    # RFC 3339 timestamps in UTC sort as strings; ties broken by key, so every replica of
    # the operator picks the same holder.
    created = adapter.metadata.get("creationTimestamp") or "9999"
    return created, adapter.namespace, adapter.name


def name_holder(claimants: Iterable[LoRAAdapter]) -> LoRAAdapter | None:
    """Of the adapters claiming one served name on one service, the oldest holds it."""
    return min(claimants, key=_age, default=None)


def admit(
    adapter: LoRAAdapter,
    isvc: InferenceService | None,
    peers: Iterable[LoRAAdapter],
    tenant_labels: dict[str, str] | None,
) -> Problem | None:
    """Why `adapter` may not attach (None: it may, pending its artifact's checks).

    `peers`: every adapter aimed at the same service that passes the other checks
    (the caller filters with `admissible`), `adapter` itself may be among them.
    """
    ns, name = adapter.service_key()
    if isvc is None:
        return Problem("ServiceNotFound", f"InferenceService {ns}/{name} does not exist")
    lora = isvc.spec.engine.lora
    if lora.max_adapters == 0:
        return Problem(
            "LoRADisabled",
            f"InferenceService {ns}/{name} does not serve adapters (engine.lora.maxAdapters is 0)",
        )
    kind = isvc.spec.engine.kind
    if not ENGINES[kind].lora_delivery:
        return Problem(
            "UnsupportedByEngine",
            f"engine {kind} has no runtime adapter API: the operator delivers adapters to "
            "engines infleet, vllm and sglang",
        )
    if not admits_namespace(isvc, adapter.namespace, tenant_labels):
        return Problem(
            "NamespaceNotAllowed",
            f"InferenceService {ns}/{name} does not admit adapters from namespace "
            f"{adapter.namespace} (engine.lora.allowedNamespaces / namespaceSelector)",
        )
    rank = adapter.spec.rank
    if rank is not None and rank > lora.max_rank:
        return Problem(
            "RankTooLarge",
            f"rank {rank} exceeds the service's engine.lora.maxRank {lora.max_rank}",
        )
    served = adapter.served_name()
    if served == resolve_model(isvc.spec.model).served_name:
        return Problem("NameConflict", f"servedName {served!r} is the base model's name")
    same = [p for p in peers if p.served_name() == served]
    holder = name_holder([adapter, *same])
    if holder is not None and (holder.namespace, holder.name) != (adapter.namespace, adapter.name):
        # Whose adapter holds it is not said: another tenant's adapter names are not ours.
        return Problem(
            "NameConflict",
            f"servedName {served!r} is already served on InferenceService {ns}/{name}",
        )
    return None


def rank_problem(rank: int, max_rank: int) -> Problem | None:
    """The rank read from the adapter, checked against the service's maxRank."""
    if rank > max_rank:
        return Problem(
            "RankTooLarge", f"the adapter's rank {rank} exceeds engine.lora.maxRank {max_rank}"
        )
    return None

"""Label and field selectors, parsed the way the apiserver reads `?labelSelector=`."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from infleet.localplane.errors import ApiError

Requirement = tuple[str, str, frozenset[str]]  # (key, operator, values)
Predicate = Callable[[dict[str, Any]], bool]

_SET_RE = re.compile(r"^\s*(!?)\s*([\w./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQ_RE = re.compile(r"^\s*([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)\s*$")


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses: `a in (x,y),b` -> [`a in (x,y)`, `b`]."""
    parts, depth, cur = [], 0, []
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p for p in parts if p.strip()]


def parse_label_selector(text: str) -> list[Requirement]:
    reqs: list[Requirement] = []
    for part in _split_top(text or ""):
        if m := _EQ_RE.match(part):
            op = "!=" if m.group(2) == "!=" else "="
            reqs.append((m.group(1), op, frozenset([m.group(3)])))
        elif m := _SET_RE.match(part):
            neg, key, op, vals = m.groups()
            if op:
                values = frozenset(v.strip() for v in vals.split(",") if v.strip())
                reqs.append((key, op, values))
            else:
                reqs.append((key, "!" if neg else "exists", frozenset()))
        else:
            raise ApiError(400, f"unable to parse requirement: {part.strip()!r}")
    return reqs


def matches(reqs: list[Requirement], labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    for key, op, values in reqs:
        present = key in labels
        value = labels.get(key)
        ok = {
            "=": present and value in values,
            "!=": not present or value not in values,
            "in": present and value in values,
            "notin": not present or value not in values,
            "exists": present,
            "!": not present,
        }[op]
        if not ok:
            return False
    return True


def selector_requirements(selector: dict[str, Any] | None) -> list[Requirement] | None:
    """A `metav1.LabelSelector` object as requirements; None selects nothing."""
    if selector is None:
        return None
    reqs: list[Requirement] = [
        (k, "=", frozenset([v])) for k, v in (selector.get("matchLabels") or {}).items()
    ]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in selector.get("matchExpressions") or []:
        reqs.append((expr["key"], ops[expr["operator"]], frozenset(expr.get("values") or [])))
    return reqs


def selects(selector: dict[str, Any] | None, labels: dict[str, str] | None) -> bool:
    reqs = selector_requirements(selector)
    return reqs is not None and matches(reqs, labels)


class SelectorIndex:
    """Which of many stored label selectors (per namespace) a pod's labels satisfy,
    without testing each one: every selector is filed under one of its matchLabels
    pairs (the one fewest other selectors share, so a pair common to all, such as
    `app.kubernetes.io/managed-by`, is rarely picked), and only the selectors filed
    under a pair the labels carry are tested. Testing every Service or budget of a
    namespace on every pod event made the controllers quadratic."""

    def __init__(self) -> None:
        self._selectors: dict[tuple[str, str], tuple[dict[str, Any], Any]] = {}
        self._filed: dict[tuple[str, Any], set[str]] = {}  # (ns, pair | None) -> names
        self._shared: dict[tuple[str, str, str], int] = {}  # (ns, k, v) -> selectors using it

    def put(self, ns: str, name: str, selector: dict[str, Any] | None) -> None:
        """File a `metav1.LabelSelector` (None selects nothing and is not kept)."""
        self.drop(ns, name)
        if selector is None:
            return
        match = selector.get("matchLabels") or {}
        pairs = [(k, v) for k, v in match.items() if isinstance(v, str)]
        for k, v in pairs:
            self._shared[(ns, k, v)] = self._shared.get((ns, k, v), 0) + 1
        anchor = min(pairs, key=lambda p: (self._shared[(ns, *p)], p), default=None)
        self._selectors[(ns, name)] = (selector, anchor)
        self._filed.setdefault((ns, anchor), set()).add(name)

    def drop(self, ns: str, name: str) -> None:
        entry = self._selectors.pop((ns, name), None)
        if entry is None:
            return
        selector, anchor = entry
        for k, v in (selector.get("matchLabels") or {}).items():
            if isinstance(v, str):
                left = self._shared.pop((ns, k, v)) - 1
                if left:
                    self._shared[(ns, k, v)] = left
        names = self._filed[(ns, anchor)]
        names.discard(name)
        if not names:
            del self._filed[(ns, anchor)]

    def matching(self, ns: str, labels: dict[str, str] | None) -> set[str]:
        """Names of the selectors in `ns` that select `labels`."""
        labels = labels or {}
        found = set()
        candidates = [self._filed.get((ns, None), ())]
        candidates += [
            self._filed.get((ns, p), ()) for p in labels.items() if isinstance(p[1], str)
        ]
        for names in candidates:
            for name in names:
                selector = self._selectors[(ns, name)][0]
                if selector.get("matchExpressions"):
                    ok = selects(selector, labels)
                else:  # the common case, as a C-level subset test
                    ok = (selector.get("matchLabels") or {}).items() <= labels.items()
                if ok:
                    found.add(name)
        return found


# Field selectors the real apiserver supports beyond metadata.name/namespace.
FIELD_LABELS: dict[str, set[str]] = {
    "pods": {
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    },
    "events": {
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
        "regarding.kind",
        "regarding.name",
        "regarding.namespace",
        "regarding.uid",
    },
    "nodes": {"spec.unschedulable"},
    "secrets": {"type"},
    "namespaces": {"status.phase"},
    "replicasets": {"status.replicas"},
}


def _field_value(obj: dict[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return "" if cur is None else str(cur)


def parse_field_selector(text: str, plural: str) -> Predicate:
    allowed = {"metadata.name", "metadata.namespace"} | FIELD_LABELS.get(plural, set())
    terms: list[tuple[str, bool, str]] = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        m = re.match(r"^\s*([\w.]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not m:
            raise ApiError(400, f"invalid selector: {part.strip()!r}")
        if m.group(1) not in allowed:
            raise ApiError(400, f"field label not supported: {m.group(1)}")
        terms.append((m.group(1), m.group(2) != "!=", m.group(3)))

    def predicate(obj: dict[str, Any]) -> bool:
        return all((_field_value(obj, p) == v) == eq for p, eq, v in terms)

    return predicate

"""The label indexes that keep the plane's controllers off whole-namespace scans:
Store.labeled, SelectorIndex, per-budget disruption reconciles, the scheduler's
incremental node usage. Each is checked against what a plain scan would answer."""

from __future__ import annotations

import asyncio
import copy
import random
from typing import Any

from infleet.localplane.crud import Api
from infleet.localplane.disruption import DisruptionController
from infleet.localplane.resources import Registry
from infleet.localplane.scheduler import Scheduler
from infleet.localplane.selectors import SelectorIndex, selects
from infleet.localplane.store import Store

PODS = ("", "pods")


def _pod(name: str, ns: str = "a", node: str = "", **labels: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "100m"}}}],
        },
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


def _names(objs: Any) -> list[str]:
    return sorted(o["metadata"]["name"] for o in objs)


def test_store_labeled_follows_label_changes_and_namespaces() -> None:
    store = Store()
    store.insert(PODS, _pod("p1", app="x", tier="web"))
    store.insert(PODS, _pod("p2", app="x"))
    store.insert(PODS, _pod("p3", ns="b", app="x", tier="web"))
    assert _names(store.labeled(PODS, "a", {"app": "x"})) == ["p1", "p2"]
    assert _names(store.labeled(PODS, "a", {"app": "x", "tier": "web"})) == ["p1"]
    assert _names(store.labeled(PODS, "b", {"app": "x"})) == ["p3"]
    assert _names(store.labeled(PODS, "a", {})) == ["p1", "p2"]  # {} selects all
    assert store.labeled(PODS, "a", {"app": "y"}) == []
    assert store.labeled(PODS, "c", {"app": "x"}) == []
    assert store.labeled(PODS, "a", {"app": "x", "n": ["1"]}) == []  # not a label value

    relabeled = store.get(PODS, "a", "p2")
    relabeled["metadata"]["labels"] = {"app": "y", "tier": "web"}
    store.replace(PODS, relabeled)
    assert _names(store.labeled(PODS, "a", {"app": "x"})) == ["p1"]
    assert _names(store.labeled(PODS, "a", {"tier": "web"})) == ["p1", "p2"]
    assert _names(store.labeled(PODS, "a", {"app": "y"})) == ["p2"]

    store.remove(PODS, "a", "p1")
    assert store.labeled(PODS, "a", {"app": "x"}) == []
    assert _names(store.unordered(PODS, "a")) == ["p2"]
    assert _names(store.unordered(PODS)) == ["p2", "p3"]
    store.remove(PODS, "a", "p2")
    assert store.unordered(PODS, "a") == [] and list(store.items(PODS, "a")) == []
    assert _names(store.items(PODS)) == ["p3"]


def test_store_labeled_agrees_with_a_scan_under_random_writes() -> None:
    rng = random.Random(7)
    store = Store()
    values = ["1", "2", "3"]
    for step in range(400):
        ns, name = rng.choice("ab"), f"p{rng.randrange(12)}"
        labels = {k: rng.choice(values) for k in ("x", "y", "z") if rng.random() < 0.7}
        current = store.get(PODS, ns, name)
        if current is None:
            store.insert(PODS, _pod(name, ns, **labels))
        elif step % 5 == 0:
            store.remove(PODS, ns, name)
        else:
            current["metadata"]["labels"] = labels
            store.replace(PODS, current)
        match = {k: rng.choice(values) for k in ("x", "y") if rng.random() < 0.6}
        for space in "ab":
            scan = [
                o
                for o in store.items(PODS, space)
                if selects({"matchLabels": match}, o["metadata"]["labels"])
            ]
            assert _names(store.labeled(PODS, space, match)) == _names(scan)


def test_items_stay_name_sorted_for_list_output() -> None:
    store = Store()
    for name in ("c", "a", "b"):
        store.insert(PODS, _pod(name))
    store.insert(PODS, _pod("0", ns="b"))
    assert [o["metadata"]["name"] for o in store.items(PODS, "a")] == ["a", "b", "c"]
    assert [o["metadata"]["name"] for o in store.items(PODS)] == ["a", "b", "c", "0"]


def test_selector_index_finds_the_selectors_a_label_set_satisfies() -> None:
    index = SelectorIndex()
    shared = {"managed-by": "infleet"}
    for i in range(5):
        index.put("a", f"svc{i}", {"matchLabels": {**shared, "svc": str(i)}})
    index.put("a", "all", {})  # an empty selector selects everything
    index.put("a", "none", None)  # a missing one selects nothing
    index.put(
        "a", "expr", {"matchExpressions": [{"key": "svc", "operator": "In", "values": ["1", "2"]}]}
    )
    index.put("b", "other", {"matchLabels": {"svc": "1"}})
    assert index.matching("a", {**shared, "svc": "1"}) == {"svc1", "all", "expr"}
    assert index.matching("a", {"svc": "1"}) == {"all", "expr"}  # missing managed-by
    assert index.matching("a", {**shared, "svc": "3", "extra": "x"}) == {"svc3", "all"}
    assert index.matching("b", {"svc": "1"}) == {"other"}
    assert index.matching("c", {"svc": "1"}) == set()
    index.put("a", "svc1", {"matchLabels": {"svc": "9"}})  # re-filed, old anchor dropped
    assert index.matching("a", {**shared, "svc": "1"}) == {"all", "expr"}
    assert index.matching("a", {"svc": "9"}) == {"svc1", "all"}
    index.drop("a", "svc1")
    index.drop("a", "all")
    assert index.matching("a", {"svc": "9"}) == set()


def _api() -> Api:
    return Api(Store(), Registry())


def _drain(controller: Any) -> set[Any]:
    items = set()
    while not controller._queue.empty():
        item = controller._queue.get_nowait()
        controller._pending.discard(item)
        items.add(item)
    return items


def test_pod_events_enqueue_only_the_budgets_that_select_the_pod() -> None:
    api = _api()
    pods = api.registry.get("", "v1", "pods")
    pdbs = api.registry.get("policy", "v1", "poddisruptionbudgets")
    for ns in ("a", "b"):
        api.create(api.registry.get("", "v1", "namespaces"), "", {"metadata": {"name": ns}}, "t")
    ctl = DisruptionController(api)
    api.store.subscribe(ctl.on_event)

    def budget(ns: str, name: str, selector: dict[str, Any]) -> None:
        body = {"metadata": {"name": name}, "spec": {"minAvailable": 1, "selector": selector}}
        api.create(pdbs, ns, body, "t")

    budget("a", "web", {"matchLabels": {"app": "web"}})
    budget("a", "db", {"matchLabels": {"app": "db"}})
    budget("a", "any", {"matchExpressions": [{"key": "app", "operator": "Exists"}]})
    budget("b", "web", {"matchLabels": {"app": "web"}})
    assert _drain(ctl) == {("a", "web"), ("a", "db"), ("a", "any"), ("b", "web")}

    for i in range(2):
        api.create(pods, "a", _pod(f"web{i}", app="web"), "t")
        ready = api.get(pods, "a", f"web{i}")
        ready["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        api.update(pods, "a", f"web{i}", ready, "t", subresource="status")
    assert _drain(ctl) == {("a", "web"), ("a", "any")}
    for item in [("a", "web"), ("a", "any"), ("a", "db")]:
        asyncio.run(ctl.reconcile(item))
    status = api.get(pdbs, "a", "web")["status"]
    assert (status["expectedPods"], status["currentHealthy"], status["disruptionsAllowed"]) == (
        2,
        2,
        1,
    )
    assert api.get(pdbs, "a", "any")["status"]["expectedPods"] == 2
    assert api.get(pdbs, "a", "db")["status"]["expectedPods"] == 0
    _drain(ctl)  # the status writes themselves

    # relabeling a pod touches the budget it left and the one it joined, nothing else
    moved = api.get(pods, "a", "web1")
    moved["metadata"]["labels"] = {"app": "db"}
    api.update(pods, "a", "web1", moved, "t")
    assert _drain(ctl) == {("a", "web"), ("a", "db"), ("a", "any")}
    for item in [("a", "web"), ("a", "db")]:
        asyncio.run(ctl.reconcile(item))
    assert api.get(pdbs, "a", "web")["status"]["expectedPods"] == 1
    assert api.get(pdbs, "a", "web")["status"]["disruptionsAllowed"] == 0
    assert api.get(pdbs, "a", "db")["status"]["expectedPods"] == 1
    _drain(ctl)
    api.create(pods, "a", _pod("loner", tier="x"), "t")
    assert _drain(ctl) == set()

    api.delete(pdbs, "a", "db")
    _drain(ctl)
    api.delete(pods, "a", "web1", grace=0)
    assert _drain(ctl) == {("a", "any")}  # the deleted budget is no longer filed


def test_scheduler_usage_follows_binds_phases_and_deletes() -> None:
    api = _api()
    pods = api.registry.get("", "v1", "pods")
    api.create(api.registry.get("", "v1", "namespaces"), "", {"metadata": {"name": "a"}}, "t")
    api.create(pods, "a", _pod("early", node="n1"), "t")
    sched = Scheduler(api)  # picks up what is already stored
    api.store.subscribe(sched.on_event)
    assert sched._used["n1"] == {"cpu": 0.1, "pods": 1.0}
    for i in range(3):  # three 100m pods sum to exactly 0.3, no float dust
        api.create(pods, "a", _pod(f"p{i}", node="n2"), "t")
    assert sched._used["n2"] == {"cpu": 0.3, "pods": 3.0}
    api.create(pods, "a", _pod("waiting"), "t")
    assert sched.resync_items() == [("a", "waiting")]
    done = api.get(pods, "a", "p0")
    done["status"]["phase"] = "Succeeded"
    api.update(pods, "a", "p0", done, "t", subresource="status")
    assert sched._used["n2"] == {"cpu": 0.2, "pods": 2.0}
    api.delete(pods, "a", "p1", grace=0)
    api.delete(pods, "a", "waiting", grace=0)
    assert sched._used["n2"] == {"cpu": 0.1, "pods": 1.0}
    assert sched.resync_items() == []


def test_updates_leave_the_previous_stored_version_untouched() -> None:
    api = _api()
    pods = api.registry.get("", "v1", "pods")
    api.create(api.registry.get("", "v1", "namespaces"), "", {"metadata": {"name": "a"}}, "t")
    api.create(pods, "a", _pod("p", node="n1", app="x"), "t")
    before = copy.deepcopy(api.store.peek(PODS, "a", "p"))
    olds: list[Any] = []
    api.store.subscribe(lambda event: olds.append(event.old))
    running = api.get(pods, "a", "p")
    running["status"] = {"phase": "Running"}
    api.update(pods, "a", "p", running, "kubelet", subresource="status")
    relabeled = api.get(pods, "a", "p")
    relabeled["metadata"]["labels"] = {"app": "y"}
    api.update(pods, "a", "p", relabeled, "someone")
    assert olds[0] == before  # the version the status write replaced, as it was
    assert olds[1]["status"] == {"phase": "Running"} and olds[1]["metadata"]["labels"] == {
        "app": "x"
    }
    now = api.get(pods, "a", "p")
    assert now["status"] == {"phase": "Running"} and now["metadata"]["labels"] == {"app": "y"}
    managers = {m["manager"] for m in now["metadata"]["managedFields"]}
    assert managers == {"t", "kubelet", "someone"}

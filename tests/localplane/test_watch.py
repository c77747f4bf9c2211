"""Watch semantics over HTTP: replay from a resourceVersion, selector transitions,
bookmarks, sendInitialEvents, timeoutSeconds and 410 Gone; `kubectl get -w`."""

import json
import subprocess
import time
from collections.abc import Iterator

from tests.localplane.harness import RunningPlane
from tests.localplane.manifests import namespace

BASE = "/api/v1/namespaces/w/configmaps"


def _events(plane: RunningPlane, params: dict, until: int, timeout: float = 10) -> list[dict]:
    out: list[dict] = []
    with plane.http.stream("GET", BASE, params={"watch": "true", **params}, timeout=timeout) as r:
        for line in r.iter_lines():
            out.append(json.loads(line))
            if len(out) >= until:
                break
    return out


def _cm(plane: RunningPlane, name: str, **labels: str) -> None:
    plane.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "w", "labels": labels},
        }
    )


def test_watch_replays_from_a_version_with_selector_transitions(plane: RunningPlane) -> None:
    plane.apply(namespace("w"))
    listed = plane.http.get(BASE).json()
    since = listed["metadata"]["resourceVersion"]
    _cm(plane, "a", team="x")
    plane.kubectl("label", "cm/a", "-n", "w", "team=y", "--overwrite")  # leaves team=x
    _cm(plane, "b", team="x")
    plane.kubectl("delete", "cm/b", "-n", "w")
    got = _events(plane, {"resourceVersion": since, "labelSelector": "team=x"}, until=4)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in got] == [
        ("ADDED", "a"),
        ("DELETED", "a"),
        ("ADDED", "b"),
        ("DELETED", "b"),
    ]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in got]
    assert versions == sorted(versions) and versions[0] > int(since)


def test_bookmarks_and_initial_events_end(plane: RunningPlane) -> None:
    plane.apply(namespace("w"))
    _cm(plane, "c")
    got = _events(
        plane,
        {
            "sendInitialEvents": "true",
            "resourceVersionMatch": "NotOlderThan",
            "allowWatchBookmarks": "true",
            "labelSelector": "!team",
        },
        until=4,
    )
    # The initial events: ours and the root CA's ConfigMap every namespace gets.
    initial, got = got[:2], got[2:]
    assert [e["type"] for e in initial] == ["ADDED", "ADDED"]
    assert {e["object"]["metadata"]["name"] for e in initial} == {"c", "kube-root-ca.crt"}
    assert got[0]["type"] == "BOOKMARK"
    assert got[0]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert got[1]["type"] == "BOOKMARK"  # periodic, every 0.5 s in these tests
    newest = max(int(e["object"]["metadata"]["resourceVersion"]) for e in initial)
    assert int(got[1]["object"]["metadata"]["resourceVersion"]) >= newest


def test_timeout_seconds_ends_the_stream(plane: RunningPlane) -> None:
    start = time.monotonic()
    with plane.http.stream(
        "GET",
        BASE,
        params={"watch": "true", "timeoutSeconds": "1", "resourceVersion": "0"},
        timeout=10,
    ) as r:
        list(r.iter_lines())
    assert 0.9 < time.monotonic() - start < 5


def test_too_old_resource_version_is_410_gone(plane: RunningPlane) -> None:
    plane.apply(namespace("w"))
    old = plane.http.get(BASE).json()["metadata"]["resourceVersion"]
    _cm(plane, "d")
    plane.call(plane.plane.store.compact)
    [err] = _events(plane, {"resourceVersion": old}, until=1)
    assert err["type"] == "ERROR"
    assert err["object"]["code"] == 410 and err["object"]["reason"] == "Expired"
    assert err["object"]["message"].startswith(f"too old resource version: {old}")


def _lines(proc: subprocess.Popen) -> Iterator[str]:
    assert proc.stdout is not None
    yield from proc.stdout


def test_kubectl_get_watch_prints_table_rows(plane: RunningPlane) -> None:
    plane.apply(namespace("w"))
    proc = subprocess.Popen(
        ["kubectl", "get", "cm", "-n", "w", "-w", "--output-watch-events"],
        stdout=subprocess.PIPE,
        text=True,
        env=plane.env,
    )
    try:
        lines = _lines(proc)
        header = next(lines).split()
        assert header[:2] == ["EVENT", "NAME"]
        plane.wait_for(lambda: True)
        _cm(plane, "watched")
        seen = next(line for line in lines if "watched" in line)
        assert seen.split()[:2] == ["ADDED", "watched"]
    finally:
        proc.kill()
        proc.wait()

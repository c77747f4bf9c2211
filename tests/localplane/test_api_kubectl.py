"""The API server through real kubectl: discovery, CRDs, validation, patches, SSA,
conflicts, selectors, finalizers, garbage collection, namespaces."""

import json

import pytest

from tests.localplane.harness import RunningPlane
from tests.localplane.manifests import WIDGET_CRD, namespace, widget


@pytest.fixture(scope="module")
def crd(plane: RunningPlane) -> RunningPlane:
    plane.apply(WIDGET_CRD)
    plane.kubectl("wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=10s")
    return plane


def test_discovery_version_and_builtin_objects(plane: RunningPlane) -> None:
    resources = plane.kubectl("api-resources", "-o", "name").stdout.split()
    assert {
        "pods",
        "deployments.apps",
        "customresourcedefinitions.apiextensions.k8s.io",
        "leases.coordination.k8s.io",
        "events.events.k8s.io",
    } <= set(resources)
    assert "v1.32" in plane.kubectl("version").stdout
    # kubectl 1.32 reads aggregated discovery: two documents, no per-group-version fetches
    fresh = plane.kubectl("api-resources", "-v=6", f"--cache-dir={plane.dir / 'fresh-cache'}")
    fetched = [
        line.split("GET ")[1].split("?")[0] for line in fresh.stderr.splitlines() if "GET " in line
    ]
    assert [u.rsplit("/", 1)[1] for u in fetched] == ["api", "apis"]
    # `kubectl create namespace|configmap` send protobuf bodies: decoded, not refused.
    plane.kubectl("create", "namespace", "disc")
    plane.kubectl("create", "configmap", "cfg", "-n", "disc", "--from-literal=a=b")
    cm = plane.get("configmap", "cfg", "-n", "disc")
    assert cm["data"] == {"a": "b"}
    assert cm["metadata"]["uid"] and int(cm["metadata"]["resourceVersion"]) > 0
    assert cm["metadata"]["creationTimestamp"].endswith("Z")
    raw = json.loads(plane.kubectl("get", "--raw", "/api/v1/namespaces/disc/configmaps").stdout)
    assert raw["kind"] == "ConfigMapList" and raw["metadata"]["resourceVersion"]
    missing = plane.kubectl("get", "configmap", "nope", "-n", "disc", check=False)
    assert 'configmaps "nope" not found' in missing.stderr


def test_crd_defaults_printer_columns_and_explain(crd: RunningPlane) -> None:
    crd.apply([namespace("crd"), widget("w1", "crd", replicas=2)])
    obj = crd.get("widget", "w1", "-n", "crd")
    assert obj["spec"] == {"size": "small", "replicas": 2, "min": 0, "max": 5}
    assert obj["metadata"]["generation"] == 1
    table = crd.kubectl("get", "wd", "-n", "crd").stdout.splitlines()
    assert table[0].split() == ["NAME", "REPLICAS", "READY", "AGE"]
    assert table[1].split()[:2] == ["w1", "2"]
    explain = crd.kubectl("explain", "widget.spec").stdout
    assert "size\t<string> -required-" in explain and "replicas\t<integer>" in explain


def test_invalid_objects_get_the_apiservers_messages(crd: RunningPlane) -> None:
    crd.apply(namespace("bad"))
    cel = crd.kubectl(
        "apply", "-f", "-", check=False, input=json.dumps(widget("b1", "bad", min=7, max=3))
    )
    assert cel.returncode == 1
    assert (
        'The Widget "b1" is invalid: spec: Invalid value: "object": '
        "spec.min must not exceed spec.max"
    ) in cel.stderr
    schema = crd.kubectl(
        "apply",
        "-f",
        "-",
        check=False,
        input=json.dumps(widget("b2", "bad", size="huge", replicas=-1, note="much too long")),
    )
    assert (
        'spec.size: Unsupported value: "huge": supported values: "small", "large"' in schema.stderr
    )
    assert (
        "spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0"
        in schema.stderr
    )
    assert "spec.note: Too long: may not be more than 8 bytes" in schema.stderr
    unknown = crd.kubectl(
        "apply", "-f", "-", check=False, input=json.dumps(widget("b3", "bad", bogus=1))
    )
    assert 'strict decoding error: unknown field "spec.bogus"' in unknown.stderr
    typed = crd.kubectl(
        "apply",
        "-f",
        "-",
        check=False,
        input=json.dumps({**widget("b4", "bad", replicas="two"), "spec": {"replicas": "two"}}),
    )
    assert "spec.size: Required value" in typed.stderr
    assert 'spec.replicas in body must be of type integer: "string"' in typed.stderr
    assert crd.kubectl("get", "widgets", "-n", "bad", "-o", "name").stdout == ""


def test_scale_subresource_and_status_split(crd: RunningPlane) -> None:
    crd.apply([namespace("scale"), widget("s1", "scale")])
    crd.kubectl("scale", "widget/s1", "-n", "scale", "--replicas=4")
    scale = json.loads(
        crd.kubectl("get", "--raw", "/apis/example.com/v1/namespaces/scale/widgets/s1/scale").stdout
    )
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 4
    # The main resource ignores status; the status subresource ignores everything else.
    crd.kubectl(
        "patch",
        "widget/s1",
        "-n",
        "scale",
        "--type=merge",
        "-p",
        '{"status": {"replicas": 9}, "metadata": {"labels": {"x": "y"}}}',
    )
    crd.kubectl(
        "patch",
        "widget/s1",
        "-n",
        "scale",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status": {"replicas": 3}, "spec": {"replicas": 1}}',
    )
    obj = crd.get("widget", "s1", "-n", "scale")
    assert obj["status"] == {"replicas": 3}
    assert obj["spec"]["replicas"] == 4 and obj["metadata"]["labels"] == {"x": "y"}
    assert obj["metadata"]["generation"] == 2  # the scale changed spec; labels/status did not


def test_client_side_apply_three_way_and_patch_types(plane: RunningPlane) -> None:
    ns = "patches"
    plane.apply(namespace(ns))
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": ns, "labels": {"a": "1", "b": "2"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "d"}},
            "template": {
                "metadata": {"labels": {"app": "d"}},
                "spec": {
                    "containers": [
                        {"name": "one", "image": "x", "command": ["true"]},
                        {"name": "two", "image": "y", "command": ["true"]},
                    ]
                },
            },
        },
    }
    plane.apply(deploy)
    plane.kubectl("label", "deployment/d", "-n", ns, "c=3")  # someone else's field
    del deploy["metadata"]["labels"]["b"]
    plane.apply(deploy)
    assert plane.get("deployment", "d", "-n", ns)["metadata"]["labels"] == {"a": "1", "c": "3"}
    # strategic merge: env added to container "two" by its merge key, "one" untouched
    plane.kubectl(
        "patch",
        "deployment/d",
        "-n",
        ns,
        "-p",
        json.dumps(
            {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [{"name": "two", "env": [{"name": "E", "value": "v"}]}]
                        }
                    }
                }
            }
        ),
    )
    containers = plane.get("deployment", "d", "-n", ns)["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["one", "two"]
    assert containers[1]["env"] == [{"name": "E", "value": "v"}] and "env" not in containers[0]
    plane.kubectl(
        "patch",
        "deployment/d",
        "-n",
        ns,
        "--type=json",
        "-p",
        '[{"op": "replace", "path": "/spec/replicas", "value": 0},'
        ' {"op": "add", "path": "/metadata/annotations", "value": {"k": "v"}}]',
    )
    failed = plane.kubectl(
        "patch",
        "deployment/d",
        "-n",
        ns,
        "--type=json",
        "-p",
        '[{"op": "test", "path": "/spec/replicas", "value": 5}]',
        check=False,
    )
    assert failed.returncode == 1
    plane.kubectl(
        "patch",
        "deployment/d",
        "-n",
        ns,
        "--type=merge",
        "-p",
        '{"metadata": {"labels": {"a": null}}}',
    )
    d = plane.get("deployment", "d", "-n", ns)
    assert d["metadata"]["labels"] == {"c": "3"} and d["metadata"]["annotations"]["k"] == "v"


def test_stale_resource_version_is_a_409(plane: RunningPlane) -> None:
    plane.apply(namespace("stale"))
    plane.kubectl("create", "configmap", "c", "-n", "stale", "--from-literal=k=1")
    stale = plane.get("configmap", "c", "-n", "stale")
    plane.kubectl("patch", "configmap/c", "-n", "stale", "-p", '{"data": {"k": "2"}}')
    stale["data"]["k"] = "3"
    out = plane.kubectl("replace", "-f", "-", input=json.dumps(stale), check=False)
    assert out.returncode == 1
    assert (
        'Operation cannot be fulfilled on configmaps "c": the object has been modified; '
        "please apply your changes to the latest version and try again"
    ) in out.stderr


def test_server_side_apply_managers_conflicts_and_force(crd: RunningPlane) -> None:
    crd.apply(namespace("ssa"))
    doc = json.dumps(widget("s", "ssa", replicas=2))
    crd.kubectl("apply", "--server-side", "--field-manager=alice", "-f", "-", input=doc)
    crd.kubectl("apply", "--server-side", "--field-manager=bob", "-f", "-", input=doc)  # shares
    clash = json.dumps(widget("s", "ssa", replicas=3))
    out = crd.kubectl(
        "apply", "--server-side", "--field-manager=bob", "-f", "-", input=clash, check=False
    )
    assert (
        'Apply failed with 1 conflict: conflict with "alice" using example.com/v1: .spec.replicas'
        in out.stderr
    )
    crd.kubectl(
        "apply", "--server-side", "--field-manager=bob", "--force-conflicts", "-f", "-", input=clash
    )
    obj = crd.get("widget", "s", "-n", "ssa", "--show-managed-fields")
    owners = {m["manager"]: m["fieldsV1"] for m in obj["metadata"]["managedFields"]}
    assert "f:replicas" in owners["bob"]["f:spec"] and "f:replicas" not in owners["alice"]["f:spec"]
    assert obj["spec"]["replicas"] == 3
    # alice stops applying `size`: bob still owns it, so it stays; her sole field goes.
    crd.kubectl(
        "apply",
        "--server-side",
        "--field-manager=alice",
        "-f",
        "-",
        input=json.dumps({**widget("s", "ssa"), "spec": {"size": "small", "note": "hi"}}),
    )
    crd.kubectl(
        "apply",
        "--server-side",
        "--field-manager=alice",
        "-f",
        "-",
        input=json.dumps({**widget("s", "ssa"), "spec": {"size": "small"}}),
    )
    spec = crd.get("widget", "s", "-n", "ssa")["spec"]
    assert "note" not in spec and spec["size"] == "small" and spec["replicas"] == 3


def test_label_and_field_selectors(plane: RunningPlane) -> None:
    plane.apply(namespace("sel"))
    for name, labels in (("a", {"tier": "x", "app": "p"}), ("b", {"tier": "y"}), ("c", {})):
        plane.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": "sel", "labels": labels},
            }
        )

    def names(*args: str) -> list[str]:
        return [i["metadata"]["name"] for i in plane.get("configmaps", "-n", "sel", *args)["items"]]

    assert names("-l", "tier in (x,y)") == ["a", "b"]
    assert names("-l", "tier,!app") == ["b"]
    # != also matches what lacks the label: the root CA publisher's ConfigMap, as on a cluster.
    assert names("-l", "tier!=x") == ["b", "c", "kube-root-ca.crt"]
    assert names("--field-selector", "metadata.name!=b") == ["a", "c", "kube-root-ca.crt"]
    bad = plane.kubectl("get", "cm", "-n", "sel", "--field-selector", "data.k=v", check=False)
    assert "field label not supported: data.k" in bad.stderr


def test_finalizers_hold_deletion(crd: RunningPlane) -> None:
    crd.apply(
        [
            namespace("fin"),
            {
                **widget("f", "fin"),
                "metadata": {"name": "f", "namespace": "fin", "finalizers": ["example.com/hold"]},
            },
        ]
    )
    crd.kubectl("delete", "widget/f", "-n", "fin", "--wait=false")
    held = crd.get("widget", "f", "-n", "fin")
    assert held["metadata"]["deletionTimestamp"]
    added = crd.kubectl(
        "patch",
        "widget/f",
        "-n",
        "fin",
        "--type=merge",
        "-p",
        '{"metadata": {"finalizers": ["example.com/hold", "x/y"]}}',
        check=False,
    )
    assert "no new finalizers can be added if the object is being deleted" in added.stderr
    crd.kubectl(
        "patch", "widget/f", "-n", "fin", "--type=merge", "-p", '{"metadata": {"finalizers": null}}'
    )
    assert crd.kubectl("get", "widget/f", "-n", "fin", check=False).returncode == 1


def _children(plane: RunningPlane, ns: str) -> list[str]:
    return [
        i["metadata"]["name"] for i in plane.get("configmaps", "-n", ns, "-l", "child=1")["items"]
    ]


def _owned_configmaps(plane: RunningPlane, ns: str, owner: dict, n: int, **meta: object) -> None:
    ref = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "blockOwnerDeletion": True,
    }
    plane.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": f"{owner['metadata']['name']}-{i}",
                    "namespace": ns,
                    "labels": {"child": "1"},
                    "ownerReferences": [ref],
                    **meta,
                },
            }
            for i in range(n)
        ]
    )


def test_garbage_collection_background_foreground_orphan(crd: RunningPlane) -> None:
    ns = "gc"
    crd.apply([namespace(ns), widget("bg", ns), widget("fg", ns), widget("or", ns)])
    bg, fg, orphan = (crd.get("widget", n, "-n", ns) for n in ("bg", "fg", "or"))
    _owned_configmaps(crd, ns, bg, 2)
    crd.kubectl("delete", "widget/bg", "-n", ns)
    crd.wait_for(lambda: not _children(crd, ns), what="background GC")
    # foreground: the owner waits (foregroundDeletion finalizer) for a held dependent
    _owned_configmaps(crd, ns, fg, 1, finalizers=["example.com/hold"])
    crd.kubectl("delete", "widget/fg", "-n", ns, "--cascade=foreground", "--wait=false")
    owner = crd.wait_for(lambda: crd.get("widget", "fg", "-n", ns)["metadata"].get("finalizers"))
    assert owner == ["foregroundDeletion"]
    crd.wait_for(
        lambda: crd.get("configmap", "fg-0", "-n", ns)["metadata"].get("deletionTimestamp")
    )
    crd.kubectl(
        "patch",
        "configmap/fg-0",
        "-n",
        ns,
        "--type=merge",
        "-p",
        '{"metadata": {"finalizers": null}}',
    )
    crd.wait_for(
        lambda: crd.kubectl("get", "widget/fg", "-n", ns, check=False).returncode == 1,
        what="foreground owner gone",
    )
    _owned_configmaps(crd, ns, orphan, 2)
    crd.kubectl("delete", "widget/or", "-n", ns, "--cascade=orphan")
    cms = crd.get("configmaps", "-n", ns, "-l", "child=1")["items"]
    assert sorted(c["metadata"]["name"] for c in cms) == ["or-0", "or-1"]
    assert all(not c["metadata"].get("ownerReferences") for c in cms)


def test_namespace_deletion_empties_it(plane: RunningPlane) -> None:
    plane.apply(namespace("gone"))
    plane.kubectl("create", "configmap", "c", "-n", "gone")
    plane.kubectl("delete", "namespace", "gone", "--timeout=20s")
    assert plane.kubectl("get", "ns", "gone", check=False).returncode == 1
    assert not plane.call(lambda: list(plane.plane.store.items(("", "configmaps"), "gone")))


def test_events_both_apis_share_one_storage(plane: RunningPlane) -> None:
    plane.apply(
        [
            namespace("ev"),
            {
                "apiVersion": "events.k8s.io/v1",
                "kind": "Event",
                "metadata": {"name": "e1", "namespace": "ev"},
                "eventTime": "2026-01-01T00:00:00.000000Z",
                "reason": "Tested",
                "note": "hello",
                "type": "Normal",
                "action": "Test",
                "reportingController": "tests",
                "reportingInstance": "tests",
                "regarding": {"kind": "Pod", "name": "p", "namespace": "ev"},
            },
        ]
    )
    assert plane.get("events.events.k8s.io", "e1", "-n", "ev")["note"] == "hello"
    core = plane.get("events.v1.", "e1", "-n", "ev")  # the core/v1 view of the same object
    assert core["message"] == "hello" and core["involvedObject"]["name"] == "p"
    assert core["source"] == {"component": "tests"}
    selected = plane.get("events", "-n", "ev", "--field-selector", "involvedObject.name=p")
    assert [e["metadata"]["name"] for e in selected["items"]] == ["e1"]
    plane.kubectl(
        "patch", "events.events.k8s.io/e1", "-n", "ev", "--type=merge", "-p", '{"note": "changed"}'
    )
    assert plane.get("events.v1.", "e1", "-n", "ev")["message"] == "changed"
    table = plane.kubectl("get", "events", "-n", "ev").stdout
    assert "pod/p" in table and "changed" in table


def test_immutable_fields_of_pods_and_selectors(plane: RunningPlane) -> None:
    ns = "immutable"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": ns},
        "spec": {
            "nodeSelector": {"no": "such-node"},
            "containers": [{"name": "c", "image": "a", "command": ["true"]}],
        },
    }
    plane.apply([namespace(ns), pod])
    plane.kubectl(
        "patch", "pod/p", "-n", ns, "-p", '{"spec": {"containers": [{"name": "c", "image": "b"}]}}'
    )  # image may change
    out = plane.kubectl(
        "patch",
        "pod/p",
        "-n",
        ns,
        "-p",
        '{"spec": {"containers": [{"name": "c", "command": ["false"]}]}}',
        check=False,
    )
    assert (
        'The Pod "p" is invalid: spec: Forbidden: pod updates may not change fields' in out.stderr
    )
    d = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": ns},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "d"}},
            "template": {
                "metadata": {"labels": {"app": "d", "v": "2"}},
                "spec": {"containers": [{"name": "c", "image": "x", "command": ["true"]}]},
            },
        },
    }
    plane.apply(d)
    d["spec"]["selector"] = {"matchLabels": {"app": "d", "v": "2"}}
    out = plane.kubectl("replace", "-f", "-", input=json.dumps(d), check=False)
    assert (
        'spec.selector: Invalid value: {"matchLabels": {"app": "d", "v": "2"}}: field is immutable'
        in out.stderr
    )

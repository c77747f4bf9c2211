"""The router the operator renders in front of a service (operator/router.py)."""

import kubernetes_validate
import pytest
import yaml

from infleet.api.router import RouterSpec
from infleet.operator.cli import render_documents
from infleet.operator.lora_names import set_name
from infleet.operator.names import SERVICE_LABEL
from infleet.operator.reconcile import url_service
from infleet.operator.render import RenderOptions, render_children
from infleet.operator.status import compute_status
from infleet.router import cli as router_cli
from tests.operator import samples
from tests.operator.pod_security_standard import violations
from tests.operator.samples import body, merge
from tests.operator.test_render import SUPPORTED

ROUTER_KINDS = [
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ConfigMap",
    "Deployment",
    "Service",
    "PodDisruptionBudget",
]


def isvc(**spec):
    """A service with spec.router.enabled unset: the default rule decides."""
    return samples.isvc(**merge({"router": {"enabled": None}}, spec))


def engine_isvc(kind, mix):
    return samples.engine_isvc(kind, mix, router={"enabled": None})


def routers(children):
    """The router's children, by kind."""
    return {c["kind"]: c for c in children if c["metadata"]["name"].endswith("-router")}


def matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize(
    ("spec", "adapters", "on"),
    [
        ({"scaling": {"maxReplicas": 1}}, [], False),
        ({"scaling": {"maxReplicas": 2}}, [], True),
        ({}, [], True),  # maxReplicas defaults to 4
        (
            {
                "scaling": {"maxReplicas": 1},
                "model": {"uri": "hf://org/model"},
                "engine": {"kind": "vllm", "lora": {"maxAdapters": 4}},
            },
            [],
            True,
        ),
        ({"scaling": {"maxReplicas": 1}}, ["sql-v2"], True),
        ({"scaling": {"maxReplicas": 4}, "router": {"enabled": False}}, ["sql-v2"], False),
        ({"scaling": {"maxReplicas": 1}, "router": {"enabled": True}}, [], True),
    ],
)
def test_the_router_is_on_by_default_with_more_than_one_replica_or_adapters(spec, adapters, on):
    found = routers(render_children(isvc(**spec), adapters=adapters))
    assert sorted(found) == (sorted(ROUTER_KINDS) if on else [])


@pytest.mark.parametrize("minor", [SUPPORTED[0], SUPPORTED[-1]], ids=lambda m: f"1.{m[1]}")
def test_the_routers_children_validate_against_the_strict_schemas(minor):
    children = render_children(engine_isvc("vllm", "mixed"), RenderOptions(kube_version=minor))
    assert sorted(routers(children)) == sorted(ROUTER_KINDS)
    for child in routers(children).values():
        kubernetes_validate.validate(child, f"1.{minor[1]}.0", strict=True)


def test_the_router_deployment_runs_infleet_router_on_the_engines_service():
    spec = {"model": {"name": "qwen-7b"}, "router": {"holdQueue": {"maxRequests": 9}}}
    children = render_children(
        isvc(**spec), RenderOptions(router_image="registry.local/op:1"), ["b", "a"]
    )
    found = routers(children)
    deployment = found["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.local/op:1"
    assert container["command"] == ["infleet"]
    args = container["args"]
    assert args[0] == "router"
    assert {"--model=qwen-7b", "--service=chat", "--adapter-set=chat-lora"} <= set(args)
    assert not [a for a in args if a.startswith("--adapter=")]  # the set is watched instead
    parsed = router_cli.parser().parse_args(args[1:])  # what `infleet router` reads
    assert (parsed.service, parsed.adapter_set, parsed.adapter) == ("chat", "chat-lora", [])
    # --spec is the ConfigMap's file, and it holds spec.router as the router reads it.
    (spec_arg,) = [a for a in args if a.startswith("--spec=")]
    mount, kube_api = container["volumeMounts"]
    assert spec_arg.removeprefix("--spec=") == f"{mount['mountPath']}/router.yaml"
    volume, token = pod["volumes"]
    assert volume["configMap"]["name"] == found["ConfigMap"]["metadata"]["name"]
    # Discovery's token and CA: projected, and where its flags say.
    assert pod["automountServiceAccountToken"] is False
    assert token["name"] == kube_api["name"]
    files = {f"{kube_api['mountPath']}/token", f"{kube_api['mountPath']}/ca.crt"}
    assert {a.split("=", 1)[1] for a in args if a.startswith("--kube-")} == files
    text = found["ConfigMap"]["data"]["router.yaml"]
    assert RouterSpec.model_validate(yaml.safe_load(text)).hold_queue.max_requests == 9
    assert violations(pod) == []  # Pod Security "restricted"


def test_router_pods_are_not_the_services_replicas():
    children = render_children(isvc())
    found = routers(children)
    labels = found["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert SERVICE_LABEL not in labels  # status.selector and the autoscaler never see them
    engines = next(
        c for c in children if c["kind"] == "Service" and c["metadata"]["name"] == "chat"
    )
    assert not matches(engines["spec"]["selector"], labels)
    assert matches(found["Service"]["spec"]["selector"], labels)
    assert matches(found["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"], labels)
    # Every router child still carries the service's labels: watched, pruned, owned.
    for child in found.values():
        assert child["metadata"]["labels"][SERVICE_LABEL] == "chat"
        assert child["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


def test_the_router_may_read_endpoint_slices_and_its_adapter_set_and_nothing_else():
    found = routers(render_children(isvc()))
    assert found["Role"]["rules"] == [
        {
            "apiGroups": ["discovery.k8s.io"],
            "resources": ["endpointslices"],
            "verbs": ["get", "list", "watch"],
        },
        {  # the one ConfigMap it watches (by name: list + watch, never get)
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [set_name("chat")],
            "verbs": ["list", "watch"],
        },
    ]
    binding, account = found["RoleBinding"], found["ServiceAccount"]["metadata"]["name"]
    assert binding["roleRef"]["name"] == found["Role"]["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account}]
    pod = found["Deployment"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account


def test_a_changed_router_spec_rolls_the_routers():
    def annotations(limits):
        found = routers(render_children(isvc(router={"tenantLimits": limits})))
        return found["Deployment"]["spec"]["template"]["metadata"]["annotations"]

    assert annotations({"requestsPerSecond": 5}) != annotations({"requestsPerSecond": 6})


def test_the_engines_network_policy_admits_the_router():
    from infleet.operator.policy import NetworkSettings, PlatformPolicy

    # The platform refuses the service's own namespace: only the router gets in.
    policy = PlatformPolicy(network=NetworkSettings(same_namespace=False))
    children = render_children(isvc(), RenderOptions(platform=policy))
    (netpol,) = [c for c in children if c["kind"] == "NetworkPolicy"]
    router_pods = routers(children)["Deployment"]["spec"]["template"]["metadata"]["labels"]
    peers = [p for rule in netpol["spec"]["ingress"] for p in rule["from"]]
    assert {"podSelector": {"matchLabels": router_pods}} in peers


def test_status_url_names_the_routers_service_when_there_is_one():
    children = render_children(isvc())
    live = {(c["kind"], c["metadata"]["name"]): c for c in children}
    name = url_service(children, live, "chat")
    assert name == "chat-router"
    status = compute_status(
        body(router={}), {}, live[("Service", name)], None, "2026-01-01T00:00:00Z"
    )
    assert status["url"] == "http://chat-router.team-a.svc.cluster.local:8000/v1"
    # Router off: the engines' Service, as before.
    plain = render_children(isvc(scaling={"maxReplicas": 1}))
    assert url_service(plain, live, "chat") == "chat"
    # A spec that cannot be rendered keeps naming the router while it runs.
    assert url_service([], live, "chat") == "chat-router"
    assert url_service([], {}, "chat") == "chat"


def test_infleet_render_turns_the_router_on_for_adapters_aimed_at_the_service():
    service = body(scaling={"maxReplicas": 1}, router={"enabled": None})
    here, elsewhere = (
        {
            "apiVersion": "infleet.io/v1alpha1",
            "kind": "LoRAAdapter",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"uri": "hf://org/x", "inferenceService": "chat", "rank": 8},
        }
        for name, namespace in (("sql-v2", "team-a"), ("elsewhere", "team-b"))
    )

    def render(*docs):
        return routers(render_documents(yaml.safe_dump_all(docs), RenderOptions(), "default"))

    # maxReplicas 1: only an adapter aimed at the service (same namespace) turns the
    # router on; its name is in no child, since the router watches the adapter set.
    found = render(service, here, elsewhere)
    assert sorted(found) == sorted(ROUTER_KINDS)
    assert "sql-v2" not in yaml.safe_dump(list(found.values()))
    assert render(service, elsewhere) == {}


def test_adding_or_removing_adapters_never_changes_the_routers():
    # Issue 15: a new or deleted LoRAAdapter must not roll the routers (nor anything else
    # of theirs): the same objects with none or three adapters aimed at the service.
    lora = {"engine": {"lora": {"maxAdapters": 4}}}
    none = routers(render_children(isvc(**lora), adapters=[]))
    three = routers(render_children(isvc(**lora), adapters=["sql", "chat-v2", "summary"]))
    assert sorted(none) == sorted(ROUTER_KINDS)
    assert three == none


def test_turning_the_router_off_prunes_its_children_and_nothing_else():
    from infleet.operator.diff import to_prune

    routed = render_children(isvc())
    plain = render_children(isvc(router={"enabled": False}))
    pruned = to_prune(plain, routed, "uid-1")
    assert sorted(c["kind"] for c in pruned) == sorted(ROUTER_KINDS)
    assert {c["metadata"]["name"] for c in pruned} == {"chat-router"}


def _router_and_engine(**engine):
    spec = samples.engine_isvc("infleet", "mixed", engine=engine, router={"enabled": True})
    children = render_children(spec)
    router = routers(children)["Deployment"]
    dep = next(c for c in children if c["kind"] == "Deployment" and c is not router)
    return router, dep


def _keys(deployment):
    """(the --api-keys-file arg, the volume it names, the admin key env) of a pod."""
    pod = deployment["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] in ("router", "engine"))
    arg = next((a for a in container["args"] if a.startswith("--api-keys-file=")), None)
    volume = next((v for v in pod["volumes"] if v["name"] == "api-keys"), None)
    env = next((e for e in container["env"] if e["name"] == "INFLEET_ADMIN_API_KEY"), None)
    return arg, volume, env


def test_the_routers_read_the_engines_tenant_keys_and_admin_key():
    # A LoRA service admitting other tenants: the adapter controller's keys ConfigMap and
    # admin Secret, by reference, exactly as the engines get them.
    lora = {"maxAdapters": 4, "allowedNamespaces": ["team-b"]}
    router, engines = _router_and_engine(lora=lora)
    arg, volume, env = _keys(router)
    assert arg == "--api-keys-file=/etc/infleet/api-keys/keys.yaml"
    assert (
        volume == _keys(engines)[1] == {"name": "api-keys", "configMap": {"name": "chat-api-keys"}}
    )
    assert env == _keys(engines)[2] and env["valueFrom"]["secretKeyRef"]["name"] == "chat-admin-key"
    mounts = router["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "api-keys", "mountPath": "/etc/infleet/api-keys", "readOnly": True} in mounts
    kubernetes_validate.validate(router, f"1.{SUPPORTED[-1][1]}.0", strict=True)
    # No keys: the routers read none (every caller is the default tenant), and the
    # engines' feed is open: no admin key anywhere.
    router, engines = _router_and_engine()
    assert _keys(router) == _keys(engines) == (None, None, None)


ADMIN_REF = {"secretKeyRef": {"name": "chat-admin-key", "key": "admin-key"}}


@pytest.mark.parametrize("fmt", ["tenants", "key"])
def test_a_keyed_service_without_lora_gives_engines_and_routers_one_admin_key(fmt):
    # spec.engine.apiKeys alone: the engines guard their /router/* feed with the admin
    # key, so the operator's admin Secret reaches both, by reference only.
    router, engines = _router_and_engine(apiKeys={"secretName": "my-keys", "format": fmt})
    _, _, env = _keys(router)
    assert env == _keys(engines)[2] == {"name": "INFLEET_ADMIN_API_KEY", "valueFrom": ADMIN_REF}
    if fmt == "tenants":
        assert _keys(router)[1]["secret"]["secretName"] == "my-keys"
    for deployment in (router, engines):
        pod = deployment["spec"]["template"]["spec"]
        assert not any("admin" in a for c in pod["containers"] for a in c.get("args", []))
        kubernetes_validate.validate(deployment, f"1.{SUPPORTED[-1][1]}.0", strict=True)
    # The router on or off, the engines' template is the same: no roll for the toggle.
    keys = {"apiKeys": {"secretName": "my-keys", "format": fmt}}
    off = samples.engine_isvc("infleet", "mixed", engine=keys, router={"enabled": False})
    plain = next(c for c in render_children(off) if c["kind"] == "Deployment")
    assert plain["spec"]["template"] == engines["spec"]["template"]


@pytest.mark.parametrize("kind", ["vllm", "sglang", "tgi"])
def test_engines_without_the_feed_give_their_routers_no_admin_key(kind):
    # They publish no /router/* feed: a router holds no key that opens nothing it needs,
    # even where the lora-sync sidecar has the admin key.
    lora = {"lora": {"maxAdapters": 2}} if kind != "tgi" else {}
    spec = samples.engine_isvc(
        kind, "mixed", engine={"apiKeys": {"secretName": "k"}, **lora}, router={"enabled": True}
    )
    children = render_children(spec)
    router = routers(children)["Deployment"]
    assert _keys(router)[2] is None
    engine_pod = next(c for c in children if c["kind"] == "Deployment" and c is not router)["spec"][
        "template"
    ]["spec"]
    sidecar = [c for c in engine_pod["containers"] if c["name"] == "lora-sync"]
    assert [
        e["valueFrom"] for s in sidecar for e in s["env"] if e["name"].endswith("ADMIN_API_KEY")
    ] == ([ADMIN_REF] if lora else [])

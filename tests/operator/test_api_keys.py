"""spec.engine.apiKeys: each engine kind gets the key Secret in its own spelling, the
rendered objects validate against the Kubernetes schemas, and the probes stay open."""

import json

import kubernetes_validate
import pytest
import yaml
from aiohttp.test_utils import make_mocked_request
from pydantic import ValidationError

from infleet.engine.args import build_parser, config_file_argv, parse_args
from infleet.engine.server.auth import Keys, _caller
from infleet.operator.render import render_children
from tests.operator.samples import engine_isvc
from tests.operator.test_render import KINDS, SUPPORTED, by_kind, engine_container

NEWEST = f"1.{SUPPORTED[-1][1]}.0"
# Each kind's own way to take the key: (env var, the flag that expands it or None).
SPELLING = {
    "infleet": ("INFLEET_API_KEY", None),
    "vllm": ("VLLM_API_KEY", None),
    "sglang": ("SGLANG_API_KEY", "--api-key=$(SGLANG_API_KEY)"),
    "tgi": ("API_KEY", None),
}


def render(kind: str, fmt: str = "key"):
    keys = {"secretName": "svc-keys", "format": fmt}
    children = render_children(engine_isvc(kind, "mixed", engine={"apiKeys": keys}))
    for child in children:
        kubernetes_validate.validate(child, NEWEST, strict=True)
    return by_kind(children)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_gets_the_key_from_the_secret_in_its_own_spelling(kind):
    children = render(kind)
    env_name, flag = SPELLING[kind]
    for deployment in children["Deployment"]:
        c = engine_container(deployment)
        ref = {"secretKeyRef": {"name": "svc-keys", "key": "api-key"}}
        assert {"name": env_name, "valueFrom": ref} in c["env"]
        assert (flag in c["args"]) == (flag is not None)
        # The probes still go to /health, which each engine leaves open with a key.
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["httpGet"]["path"] == "/health"
    # No value of the Secret is ever rendered: only its name.
    assert "svc-keys" in json.dumps(children) and "valueFrom" in json.dumps(children)


def test_without_api_keys_nothing_is_rendered():
    c = engine_container(by_kind(render_children(engine_isvc("sglang", "mixed")))["Deployment"][0])
    assert not any(e["name"] == "SGLANG_API_KEY" for e in c["env"])
    assert not any(a.startswith("--api-key") for a in c["args"])


def test_infleet_tenants_format_mounts_the_keys_file_for_reloading():
    children = render("infleet", "tenants")
    pod = children["Deployment"][0]["spec"]["template"]["spec"]
    c = engine_container(children["Deployment"][0])
    volume = next(v for v in pod["volumes"] if v["name"] == "api-keys")
    assert volume["secret"] == {
        "secretName": "svc-keys",
        "items": [{"key": "keys.yaml", "path": "keys.yaml"}],
    }
    mount = next(m for m in c["volumeMounts"] if m["name"] == "api-keys")
    # A directory mount, not a subPath: only then does the kubelet's symlink swap reach it.
    assert mount == {"name": "api-keys", "mountPath": "/etc/infleet/api-keys", "readOnly": True}
    assert not any(e["name"] == "INFLEET_API_KEY" for e in c["env"])
    config = yaml.safe_load(children["ConfigMap"][0]["data"]["engine.yaml"])
    assert config["api-keys-file"] == "/etc/infleet/api-keys/keys.yaml"


def test_the_infleet_engine_reads_the_rendered_config_and_its_probe_stays_open(tmp_path):
    children = render("infleet", "tenants")
    path = tmp_path / "engine.yaml"
    path.write_text(children["ConfigMap"][0]["data"]["engine.yaml"])
    args = parse_args(config_file_argv(str(path), build_parser()))
    assert args.api_keys_file == "/etc/infleet/api-keys/keys.yaml"
    keys = Keys.from_flags("sk-1", None, None)  # the engine with a key, as rendered
    probe = engine_container(children["Deployment"][0])["readinessProbe"]["httpGet"]["path"]
    assert _caller(keys, make_mocked_request("GET", probe)).name == "default"


@pytest.mark.parametrize("kind", ["vllm", "sglang", "tgi"])
def test_tenants_format_is_refused_for_other_kinds(kind):
    with pytest.raises(ValidationError, match=r"engine\.apiKeys\.format tenants needs"):
        engine_isvc(kind, "mixed", engine={"apiKeys": {"secretName": "k", "format": "tenants"}})

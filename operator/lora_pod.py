"""The LoRA parts of an engine pod (engine.lora.maxAdapters > 0), added to the rendered
template: nothing here depends on which adapters exist, so adding or removing one never
changes the template and never restarts a replica.

- every kind: the engine table's LoRA environment (vLLM: runtime loading allowed);
- the bundled engine (delivery "engine"): the service's set ConfigMap mounted read-only
  (optional: none exists before the first adapter) and named by --lora-set, a writable
  --lora-dir for the downloaded adapters (the admin key from the `<service>-admin-key`
  Secret the operator creates is operator/pod.py's, operator/admin_key.py).
  Paths go on the command line, not in the config file, so the local plane's mount-path
  rewriting reaches them.
- vLLM and SGLang (delivery "sync"): the same set, directory and admin key, given to the
  lora-sync sidecar (operator/lora_sync.py; the operator's own image), which downloads
  into the directory the engine mounts read-only and calls the engine's load API (the
  engine table's paths); its readiness probe keeps the pod un-Ready until the engine
  serves the set, and its port (`lora-sync`) is where the controller pushes.
"""

from __future__ import annotations

from typing import Any

from infleet.api import InferenceServiceSpec
from infleet.operator.admin_key import ADMIN_KEY_ENV, admin_key_ref
from infleet.operator.api_keys import api_key_env, api_keys_volumes
from infleet.operator.engines import EngineProfile
from infleet.operator.lora_names import (
    ENGINE_KEY_ENV,
    KEYS_FILE,
    SYNC_PORT_NAME,
    api_keys_name,
    set_name,
)
from infleet.operator.pod_security import container_security_context

Obj = dict[str, Any]
SET_DIR = "/etc/infleet/lora"
LORA_DIR = "/var/lib/infleet/lora"
KEYS_DIR = "/etc/infleet/api-keys"
SET_VOLUME, DIR_VOLUME, KEYS_VOLUME = "lora-set", "lora-cache", "api-keys"
SYNC_PORT = 8091


def add_lora(
    template: Obj, name: str, spec: InferenceServiceSpec, profile: EngineProfile, sync_image: str
) -> Obj:
    """`template` with the LoRA parts (unchanged when LoRA is off). `sync_image` runs the
    lora-sync sidecar (the operator's image: it ships infleet.operator, no torch)."""
    if not spec.engine.lora.max_adapters:
        return template
    pod = template["spec"]
    engine = next(c for c in pod["containers"] if c["name"] == "engine")
    env = [{"name": k, "value": v} for k, v in profile.lora_env]
    admin = admin_key_ref(name)
    if profile.lora_delivery:
        pod["volumes"] += [
            {"name": SET_VOLUME, "configMap": {"name": set_name(name), "optional": True}},
            {"name": DIR_VOLUME, "emptyDir": {}},
        ]
    if profile.lora_delivery == "sync":
        engine["volumeMounts"].append({"name": DIR_VOLUME, "mountPath": LORA_DIR, "readOnly": True})
        pod["containers"].append(_sync_container(spec, profile, sync_image, admin))
    if profile.lora_delivery == "engine":
        # Before the user's engine.args, which come last and win.
        at = len(engine["args"]) - len(spec.engine.args)
        engine["args"][at:at] = [f"--lora-set={SET_DIR}", f"--lora-dir={LORA_DIR}"]
        engine["volumeMounts"] += [
            {"name": SET_VOLUME, "mountPath": SET_DIR, "readOnly": True},
            {"name": DIR_VOLUME, "mountPath": LORA_DIR},
        ]
        # Authenticated: the tenants' key hashes (tenant_keys_volume says when).
        keys = tenant_keys_volume(name, spec, profile)
        if keys is not None:
            engine["args"][at:at] = [f"--api-keys-file={KEYS_DIR}/{KEYS_FILE}"]
            engine["volumeMounts"].append(
                {"name": KEYS_VOLUME, "mountPath": KEYS_DIR, "readOnly": True}
            )
            pod["volumes"].append(keys)
    # Ahead of engine.env, which may override any of them.
    own = {e.name for e in spec.engine.env}
    engine["env"] = [e for e in env if e["name"] not in own] + engine["env"]
    return template


def _sync_container(
    spec: InferenceServiceSpec, profile: EngineProfile, image: str, admin: Obj
) -> Obj:
    load, unload = profile.lora_api
    env = [
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": ADMIN_KEY_ENV, "valueFrom": admin},
        # The engine's own key (spec.engine.apiKeys), by the same reference.
        *(
            {"name": ENGINE_KEY_ENV, "valueFrom": e["valueFrom"]}
            for e in api_key_env(spec, profile)
        ),
    ]
    probe = {"httpGet": {"path": "/ready", "port": SYNC_PORT_NAME}, "periodSeconds": 2,
             "failureThreshold": 1, "timeoutSeconds": 5}  # fmt: skip
    return {
        "name": "lora-sync",
        "image": image,
        "command": ["infleet", "lora-sync"],
        "args": [
            f"--engine-url=http://$(POD_IP):{profile.port}",
            f"--health-path={profile.readiness_path}",
            f"--load-path={load}",
            f"--unload-path={unload}",
            f"--set-dir={SET_DIR}",
            f"--lora-dir={LORA_DIR}",
            f"--port={SYNC_PORT}",
        ],
        "env": env,
        "ports": [{"name": SYNC_PORT_NAME, "containerPort": SYNC_PORT, "protocol": "TCP"}],
        # An adapter is held in memory twice while it is checked: tens of MB, typically.
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
        "volumeMounts": [
            {"name": SET_VOLUME, "mountPath": SET_DIR, "readOnly": True},
            {"name": DIR_VOLUME, "mountPath": LORA_DIR},
        ],
        "readinessProbe": probe,
        "livenessProbe": {
            **probe,
            "httpGet": {"path": "/health", "port": SYNC_PORT_NAME},
            "periodSeconds": 15,
            "failureThreshold": 4,
        },
        "securityContext": container_security_context(),
    }


def tenant_keys_volume(name: str, spec: InferenceServiceSpec, profile: EngineProfile) -> Obj | None:
    """The tenants' key hashes the adapter controller keeps (KEYS_FILE), where a service
    admits other namespaces; None where spec.engine.apiKeys (format tenants) names the keys
    file already (operator/api_keys.py mounts that one) or nothing is delivered."""
    lora = spec.engine.lora
    if not (lora.max_adapters and profile.lora_delivery and lora.admits_others()):
        return None
    if api_keys_volumes(spec):
        return None
    return {"name": KEYS_VOLUME, "configMap": {"name": api_keys_name(name)}}

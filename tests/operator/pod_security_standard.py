"""An independent checker of the Pod Security Standards' "restricted" profile.

Written from the Kubernetes documentation (concepts/security/pod-security-standards, the
Baseline and Restricted tables, policy version latest), not from the code that renders
pods: each rule below is one row of those tables. `violations(pod_spec)` lists what the
profile forbids, in the wording of the rows; [] means the pod is admitted.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]
# Baseline "Capabilities": adding any capability beyond this list is forbidden.
BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
# Baseline "Sysctls": the safe set.
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip
# Restricted "Volume Types": only these.
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}  # fmt: skip
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def _containers(spec: Obj) -> list[Obj]:
    return [
        *(spec.get("initContainers") or []),
        *(spec.get("containers") or []),
        *(spec.get("ephemeralContainers") or []),
    ]


def _baseline(spec: Obj) -> list[str]:
    out = []
    pod_sc = spec.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            out.append(f"Host Namespaces: spec.{field} must be unset or false")
    for volume in spec.get("volumes") or []:
        if "hostPath" in volume:
            out.append(f"HostPath Volumes: volume {volume['name']} is a hostPath")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            out.append(f"Sysctls: {sysctl.get('name')} is not in the safe set")
    contexts = [("pod", pod_sc)]
    for c in _containers(spec):
        sc = c.get("securityContext") or {}
        contexts.append((c["name"], sc))
        if sc.get("privileged"):
            out.append(f"Privileged Containers: {c['name']} is privileged")
        added = set((sc.get("capabilities") or {}).get("add") or [])
        if added - BASELINE_CAPABILITIES:
            out.append(f"Capabilities: {c['name']} adds {sorted(added - BASELINE_CAPABILITIES)}")
        if any(p.get("hostPort") for p in c.get("ports") or []):
            out.append(f"Host Ports: {c['name']} sets a hostPort")
        if sc.get("procMount") not in (None, "Default"):
            out.append(f"/proc Mount Type: {c['name']} is not Default")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            out.append(f"HostProcess: {c['name']} is a Windows HostProcess container")
    for who, sc in contexts:
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            out.append(f"Seccomp: {who} is Unconfined")
        if (sc.get("appArmorProfile") or {}).get("type") == "Unconfined":
            out.append(f"AppArmor: {who} is Unconfined")
        selinux = sc.get("seLinuxOptions") or {}
        if (
            selinux.get("type", "") not in SELINUX_TYPES
            or selinux.get("user")
            or selinux.get("role")
        ):
            out.append(f"SELinux: {who} sets a custom user, role or type")
    return out


def _restricted(spec: Obj) -> list[str]:
    out = []
    pod_sc = spec.get("securityContext") or {}
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            out.append(f"Volume Types: volume {volume['name']} is {sorted(kinds)}")
    if pod_sc.get("runAsUser") == 0:
        out.append("Running as Non-root user: spec.securityContext.runAsUser is 0")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    for c in _containers(spec):
        sc, name = c.get("securityContext") or {}, c["name"]
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"Privilege Escalation: {name} must set allowPrivilegeEscalation false")
        non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        if non_root is not True:
            out.append(f"Running as Non-root: {name} (or the pod) must set runAsNonRoot true")
        if sc.get("runAsUser") == 0:
            out.append(f"Running as Non-root user: {name} sets runAsUser 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"Seccomp: {name} (or the pod) must set RuntimeDefault or Localhost")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"Capabilities: {name} must drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            out.append(f"Capabilities: {name} may add only NET_BIND_SERVICE")
    return out


def violations(pod_spec: Obj) -> list[str]:
    """Every rule of the restricted profile (which includes baseline) the pod breaks."""
    return _baseline(pod_spec) + _restricted(pod_spec)

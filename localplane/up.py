"""`infleet up`: a local fleet on this machine.

Starts the emulated control plane with a node pool, installs the CRDs, runs the
operator (`infleet operator` as a Deployment in `infleet-system`, like the chart), applies
a sample InferenceService (SmolLM2 on CPU), waits until it is Ready, prints how to use
it, and on Ctrl-C/SIGTERM stops everything: operator, engine processes, control plane.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from infleet.localplane.nodes import default_pool, load_pool
from infleet.localplane.operator_pod import NAME, NAMESPACE, operator_manifests

if TYPE_CHECKING:
    from infleet.localplane.plane import LocalPlane

SAMPLE = Path(__file__).with_name("sample.yaml")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="infleet up", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--kubeconfig",
        type=Path,
        default=Path(".infleet/kubeconfig"),
        help="where to write the kubeconfig (default: .infleet/kubeconfig)",
    )
    p.add_argument("--port", type=int, default=0, help="API server port (default: a free one)")
    p.add_argument("--dedicated-nodes", type=int, default=2, help="dedicated GPU nodes (2)")
    p.add_argument("--spot-nodes", type=int, default=4, help="spot GPU nodes (4)")
    p.add_argument("--node-pool", type=Path, help="node pool YAML (overrides the two above)")
    p.add_argument(
        "--notice-seconds", type=float, default=30.0, help="spot interruption notice (default 30)"
    )
    p.add_argument("--sample", type=Path, default=SAMPLE, help="InferenceService to apply")
    p.add_argument("--no-sample", action="store_true", help="apply no InferenceService")
    p.add_argument("--no-operator", action="store_true", help="do not run the operator")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for Ready")
    p.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="pod logs and volumes (default: a temporary directory)",
    )
    p.add_argument(
        "--pod-network",
        default="127.1.0.0/16",
        help="loopback network for pod IPs (default 127.1.0.0/16)",
    )
    p.add_argument(
        "--service-network",
        default="127.2.0.0/16",
        help="loopback network for Service IPs (default 127.2.0.0/16)",
    )
    args = p.parse_args(argv)
    for flag in ("pod_network", "service_network"):
        try:
            net = ipaddress.ip_network(getattr(args, flag))
        except ValueError as err:
            p.error(f"--{flag.replace('_', '-')}: {err}")
        if not net.is_loopback or net.num_addresses < 256:
            p.error(
                f"--{flag.replace('_', '-')}: needs a loopback network of /24 or larger "
                "(inside 127.0.0.0/8)"
            )
    for name in ("dedicated_nodes", "spot_nodes"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0")
    if args.node_pool is not None and not args.node_pool.is_file():
        p.error(f"--node-pool: no such file: {args.node_pool}")
    if not args.no_sample and not args.sample.is_file():
        p.error(f"--sample: no such file: {args.sample}")
    return args


def install_crds(plane: LocalPlane) -> None:
    from infleet.api.crds import all_crds

    rt = plane.registry.get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    for crd in all_crds():
        plane.api.create(rt, "", crd, "infleet-up")


def install_operator(plane: LocalPlane, kubeconfig: Path) -> None:
    for obj in operator_manifests(kubeconfig.read_text()):
        api_version, kind = obj["apiVersion"], obj["kind"]
        rt = plane.registry.by_kind(api_version, kind)
        plane.api.create(rt, obj["metadata"].get("namespace", ""), obj, "infleet-up")


def _ready(obj: dict[str, Any]) -> tuple[bool, str]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True", c.get("message") or c.get("reason") or ""
    return False, "waiting for the operator"


async def wait_ready(
    plane: LocalPlane, ns: str, name: str, timeout: float, stop: asyncio.Event
) -> dict[str, Any] | None:
    rt = plane.registry.get("infleet.io", "v1alpha1", "inferenceservices")
    deadline, last = time.monotonic() + timeout, ""
    while time.monotonic() < deadline and not stop.is_set():
        obj = plane.store.get(rt.key, ns, name)
        ok, why = _ready(obj or {})
        if ok:
            return obj
        why = _operator_trouble(plane) or why
        if why != last:
            print(f"  {name}: {why}", flush=True)
            last = why
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    return None


def _operator_trouble(plane: LocalPlane) -> str | None:
    """Why the operator pod is not running, if it is stuck (a crash loop, a start error)."""
    for pod in plane.store.items(("", "pods"), NAMESPACE):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in (
                "CrashLoopBackOff",
                "RunContainerError",
                "CreateContainerConfigError",
            ):
                return (
                    f"the operator is in {waiting['reason']} (restarts: "
                    f"{cs.get('restartCount', 0)}): kubectl logs -n {NAMESPACE} "
                    f"deploy/{NAME} --previous"
                )
    return None


def _banner(kubeconfig: Path, plane: LocalPlane, sample: dict[str, Any] | None) -> str:
    kc = kubeconfig.resolve()
    lines = [
        "",
        f"infleet local fleet is up: API server {plane.url}",
        f"kubeconfig: {kc}  (the API server's CA and bearer token: keep it private)",
        "",
        "Next:",
        f"  export KUBECONFIG={kc}",
        "  kubectl get nodes",
        "  kubectl get infsvc -o wide",
    ]
    if sample is not None:
        url = sample["status"].get("url", "")
        model = (sample["spec"].get("model") or {}).get("name") or "smollm2-135m-instruct"
        lines[2:2] = [f"OpenAI base URL: {url}"]
        lines += [
            f"  curl -s {url}/chat/completions -H 'content-type: application/json' \\",
            f'    -d \'{{"model": "{model}", "temperature": 0, "max_tokens": 64, '
            '"messages": [{"role": "user", "content": "What is the capital of France?"}]}\'',
        ]
    lines += [
        "  kubectl annotate node spot-0 localplane.infleet.io/interrupt=20   # a spot interruption",
        "",
        "Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> int:
    from infleet.localplane.plane import LocalPlane, PlaneConfig  # the heavy imports

    pool = (
        load_pool(args.node_pool)
        if args.node_pool
        else default_pool(args.dedicated_nodes, args.spot_nodes)
    )
    if args.node_pool is None:
        pool.notice_seconds = args.notice_seconds
    plane = LocalPlane(
        PlaneConfig(
            port=args.port,
            node_pool=pool,
            workdir=args.state_dir,
            pod_network=args.pod_network,
            service_network=args.service_network,
        )
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await plane.start()
    install_crds(plane)
    kubeconfig = plane.write_kubeconfig(args.kubeconfig)
    if not args.no_operator:
        install_operator(plane, kubeconfig)
    code = 0
    try:
        sample = None
        if not args.no_sample:
            doc = yaml.safe_load(args.sample.read_text())
            ns = doc.get("metadata", {}).get("namespace", "default")
            rt = plane.registry.by_kind(doc["apiVersion"], doc["kind"])
            plane.api.create(rt, ns, doc, "infleet-up")
            print(
                f"applied {doc['kind']} {ns}/{doc['metadata']['name']}; waiting until Ready "
                f"(operator log: kubectl --kubeconfig {kubeconfig} logs -n {NAMESPACE} "
                f"deploy/{NAME})",
                flush=True,
            )
            sample = await wait_ready(plane, ns, doc["metadata"]["name"], args.timeout, stop)
            if sample is None and not stop.is_set():
                print(f"infleet up: not Ready after {args.timeout:g}s", file=sys.stderr)
                code = 1
        if code == 0 and not stop.is_set():
            print(_banner(kubeconfig, plane, sample), flush=True)
        if code == 0:
            await stop.wait()
    finally:
        print("stopping: operator, pods, control plane", flush=True)
        await plane.stop()
    return code


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return asyncio.run(run(args))

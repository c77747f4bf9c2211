"""`infleet operator`: run the operator (every replica watches; the lease holder reconciles)."""

from __future__ import annotations

import argparse
import os
import socket
import uuid
from pathlib import Path

from infleet import __version__
from infleet.operator.engines import ENGINES
from infleet.operator.model_source import DEFAULT_FETCHER_IMAGE
from infleet.operator.router import DEFAULT_ROUTER_IMAGE

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def default_identity() -> str:
    """The pod's name in a cluster (the chart passes it), else this host and a nonce."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def default_namespace() -> str:
    """Where the lease lives: the operator's own namespace, else `default`."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    if SERVICE_ACCOUNT_NAMESPACE.is_file():
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    return "default"


def _engine_image(value: str) -> tuple[str, str]:
    kind, sep, image = value.partition("=")
    if not sep or kind not in ENGINES or not image:
        raise argparse.ArgumentTypeError(f"expected KIND=IMAGE with KIND in {sorted(ENGINES)}")
    return kind, image


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="infleet operator", description="Run the operator.")
    p.add_argument(
        "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)"
    )
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[],
        help="watch this namespace (repeatable; globs allowed)",
    )  # fmt: skip
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch every namespace (default)"
    )
    p.add_argument("--metrics-port", type=int, default=8080, help="/metrics port; 0: off")
    p.add_argument("--liveness-port", type=int, default=8081, help="/healthz port; 0: off")
    p.add_argument(
        "--fetcher-image",
        default=DEFAULT_FETCHER_IMAGE,
        help="model fetch init container (args: SOURCE DEST)",
    )
    p.add_argument(
        "--router-image",
        default=DEFAULT_ROUTER_IMAGE,
        help="image of the services' routers (`infleet router`): the operator's own",
    )
    p.add_argument(
        "--engine-image", type=_engine_image, action="append", default=[],
        metavar="KIND=IMAGE", help="default image of an engine kind",
    )  # fmt: skip
    p.add_argument(
        "--platform-policy",
        type=Path,
        metavar="FILE",
        help="tenant guardrails and network admission (docs/operations.md#platform-policy)",
    )
    p.add_argument(
        "--prometheus-url",
        metavar="URL",
        help="read the engines' metrics for autoscaling from this Prometheus HTTP API "
        "(e.g. http://prometheus-operated.monitoring:9090) instead of scraping each pod",
    )
    store = p.add_argument_group("LoRA adapter store (docs/lora-onboarding.md)")
    store.add_argument(
        "--adapter-store", type=Path, default=None, metavar="DIR",
        help="where fetched adapters are kept (default: a temporary directory)",
    )  # fmt: skip
    store.add_argument(
        "--adapter-store-port", type=int, default=8082,
        help="port the replicas download adapters from (busy: any free one); 0: no adapter "
        "controller",
    )  # fmt: skip
    election = p.add_argument_group("leader election (a coordination.k8s.io/v1 Lease)")
    election.add_argument(
        "--identity", default=None, help="this replica's name in the lease (default: $POD_NAME)"
    )
    election.add_argument("--lease-name", default="infleet-operator")
    election.add_argument(
        "--lease-namespace", default=None, help="default: $POD_NAMESPACE, the pod's, or default"
    )
    election.add_argument("--lease-duration", type=float, default=15.0, metavar="SECONDS")
    election.add_argument("--renew-deadline", type=float, default=10.0, metavar="SECONDS")
    election.add_argument("--retry-period", type=float, default=2.0, metavar="SECONDS")
    p.add_argument(
        "--api-timeout", type=float, default=10.0, metavar="SECONDS",
        help="limit of every Kubernetes API request",
    )  # fmt: skip
    return p


def operator_main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.prometheus_url and not args.prometheus_url.startswith(("http://", "https://")):
        p.error(f"--prometheus-url must be an http(s) URL, got {args.prometheus_url!r}")
    if args.api_timeout <= 0:
        p.error("--api-timeout must be positive")
    policy = None
    if args.platform_policy:
        from infleet.operator.policy import load_policy

        try:
            policy = load_policy(args.platform_policy)
        except (OSError, ValueError) as err:
            p.error(f"--platform-policy: {err}")

    import kopf
    from prometheus_client import start_http_server

    from infleet.autoscaler.prometheus_api import PrometheusSource
    from infleet.operator import handlers  # noqa: F401  (registers the handlers)
    from infleet.operator.kube import Kube, load_config
    from infleet.operator.leader import LeaseTiming
    from infleet.operator.lease import LeaseApi
    from infleet.operator.runtime import Runtime

    adapter_store = None
    if args.adapter_store_port:
        from infleet.operator.lora_store import open_store

        adapter_store = open_store(args.adapter_store, args.adapter_store_port)
    timing = LeaseTiming(
        args.lease_duration, args.renew_deadline, args.retry_period, args.api_timeout
    )
    if timing.problem():
        p.error(str(timing.problem()))
    identity = args.identity or default_identity()
    user_agent = f"infleet-operator/{__version__} ({identity})"
    kube = Kube(
        load_config(args.kubeconfig, user_agent), timeout=args.api_timeout, identity=identity
    )
    runtime = Runtime(
        kube,
        LeaseApi(kube, args.lease_namespace or default_namespace(), args.lease_name),
        timing,
        args.fetcher_image,
        dict(args.engine_image),
        prometheus=PrometheusSource(args.prometheus_url) if args.prometheus_url else None,
        platform=policy,
        router_image=args.router_image,
        adapter_store=adapter_store,
    )
    if args.metrics_port:
        start_http_server(args.metrics_port)
    liveness = f"http://0.0.0.0:{args.liveness_port}/healthz" if args.liveness_port else None
    kopf.run(
        standalone=True,  # kopf's own peering stays off: the Lease decides who reconciles
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=liveness,
        memo=kopf.Memo(runtime=runtime),
    )
    return 0

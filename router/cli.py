"""`infleet router`: route one InferenceService's requests over its replicas."""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import sys
from pathlib import Path

import yaml
from pydantic import ValidationError

from infleet.api.router import RouterSpec
from infleet.api.tenants import KeysFileError, hash_key
from infleet.router.adapter_set import watch_adapter_set
from infleet.router.config import DEFAULT_MAX_BODY_BYTES, RouterConfig
from infleet.router.discovery import poll_static
from infleet.router.kube_discovery import KubeAccess, watch_endpoint_slices
from infleet.router.proxy import Router
from infleet.router.run import Discover, run_router

ADMIN_KEY_ENV = "INFLEET_ADMIN_API_KEY"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="infleet router",
        description="Route an InferenceService's OpenAI requests over its replicas: prefix-, "
        "adapter- and load-aware, with per-tenant limits and a hold queue (docs/router.md).",
    )
    p.add_argument("--model", help="the base model name clients send (required to serve)")
    p.add_argument(
        "--adapter",
        action="append",
        default=[],
        help="a LoRA adapter name any caller may send (repeatable), for a router outside "
        "Kubernetes; on it, --adapter-set watches the service's adapters",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--replica", action="append", default=[], help="a replica's base URL (repeatable)"
    )
    where.add_argument("--service", help="the replicas' Kubernetes Service (EndpointSlices)")
    p.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE", "default"))
    p.add_argument("--port-name", default="http", help="the Service port that serves the API")
    p.add_argument(
        "--adapter-set",
        metavar="CONFIGMAP",
        help="with --service: the service's adapter set ConfigMap, watched for the adapter "
        "names and their tenants (absent: no adapters yet)",
    )
    p.add_argument(
        "--kube-api", help="API server URL (default: in-cluster, with the service account)"
    )
    p.add_argument(
        "--kube-token-file",
        type=Path,
        help="bearer token (default in a pod: the service account's)",
    )
    p.add_argument(
        "--kube-ca-file", type=Path, help="CA bundle (default in a pod: the service account's)"
    )
    p.add_argument("--spec", type=Path, help="YAML of spec.router: tenant limits, hold queue")
    p.add_argument("--api-keys-file", type=Path, help="YAML tenant -> key hashes (reloaded)")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    p.add_argument("--shutdown-grace-seconds", type=float, default=30.0)
    p.add_argument(
        "--hash-key", metavar="KEY", help="print KEY's hash for the keys file, then exit"
    )
    return p


def _spec(path: Path | None) -> RouterSpec:
    if path is None:
        return RouterSpec()
    try:
        return RouterSpec.model_validate(yaml.safe_load(path.read_text()) or {})
    except (OSError, yaml.YAMLError) as err:
        raise SystemExit(f"infleet router: --spec {path}: {err}") from None
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}" for e in err.errors()
        )
        raise SystemExit(f"infleet router: --spec {path}: {problems}") from None


def _discover(args: argparse.Namespace) -> Discover:
    if args.replica:
        urls = [u.rstrip("/").removesuffix("/v1") for u in args.replica]

        async def static(router: Router) -> None:
            assert router.session is not None
            await poll_static(router.replicas, urls, router.session)

        return static
    if args.kube_api:
        access = KubeAccess(args.kube_api.rstrip("/"), args.kube_token_file, args.kube_ca_file)
    elif "KUBERNETES_SERVICE_HOST" in os.environ:
        access = KubeAccess.in_cluster(args.kube_token_file, args.kube_ca_file)
    else:
        raise SystemExit("infleet router: --service outside a pod needs --kube-api URL")

    async def kube(router: Router) -> None:
        watches = [
            watch_endpoint_slices(
                router.replicas, access, args.namespace, args.service, args.port_name
            )
        ]
        if router.config.adapter_set:
            watches.append(
                watch_adapter_set(
                    router.adapters, access, args.namespace, router.config.adapter_set
                )
            )
        await asyncio.gather(*watches)

    return kube


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.hash_key is not None:
        print(hash_key(args.hash_key))
        return 0
    if not args.model:
        parser().error("--model is required")
    if not args.replica and not args.service:
        parser().error("give the replicas: --replica URL (repeatable) or --service NAME")
    if args.adapter_set and not args.service:
        parser().error("--adapter-set is read from Kubernetes: it needs --service NAME")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = RouterConfig(
        model=args.model,
        adapters=frozenset(args.adapter),
        adapter_set=args.adapter_set,
        spec=_spec(args.spec),
        keys_file=args.api_keys_file,
        admin_key=os.environ.get(ADMIN_KEY_ENV),
        max_body_bytes=args.max_body_bytes,
    )
    try:
        router = Router(config)
    except (OSError, KeysFileError) as err:
        print(f"infleet router: --api-keys-file: {err}", file=sys.stderr)
        return 2
    run = functools.partial(
        run_router, router, _discover(args), args.host, args.port,
        grace_seconds=args.shutdown_grace_seconds,
    )  # fmt: skip
    return asyncio.run(run())

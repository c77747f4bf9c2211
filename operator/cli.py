"""`infleet operator` (run the operator) and `infleet render -f FILE` (print its children)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from infleet.api import InferenceService
from infleet.operator.engines import ENGINES
from infleet.operator.errors import SpecError, describe
from infleet.operator.kube_versions import OLDEST, KubeVersion, parse_version
from infleet.operator.model_source import DEFAULT_FETCHER_IMAGE
from infleet.operator.render import RenderOptions, render_children


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_all(objects: Iterable[dict[str, Any]]) -> str:
    return yaml.dump_all(objects, Dumper=_NoAliases, sort_keys=False, width=100)


def render_documents(text: str, options: RenderOptions, namespace: str) -> list[dict[str, Any]]:
    """Children of every InferenceService in `text`; ValueError names the bad field."""
    out: list[dict[str, Any]] = []
    for index, doc in enumerate(yaml.safe_load_all(text)):
        if not isinstance(doc, dict) or doc.get("kind") != "InferenceService":
            continue
        meta = doc.get("metadata") or {}
        label = f"document {index + 1} (InferenceService {meta.get('name', '?')})"
        if not meta.get("name"):
            raise ValueError(f"{label}: metadata.name: Field required")
        doc = {**doc, "metadata": {**meta, "namespace": meta.get("namespace") or namespace}}
        try:
            out += render_children(InferenceService.model_validate(doc), options)
        except ValidationError as err:
            raise ValueError(f"{label}: {describe(err)}") from err
        except SpecError as err:
            raise ValueError(f"{label}: spec.{err}") from err
    return out


def render_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="infleet render",
        description="Print the objects the operator would create for the InferenceServices "
        "in FILE (multi-document YAML; other kinds are skipped).",
    )
    parser.add_argument("-f", "--filename", required=True, help="YAML file, or - for stdin")
    parser.add_argument("-n", "--namespace", default="default", help="for objects without one")
    parser.add_argument(
        "--prometheus-operator",
        action="store_true",
        help="also render ServiceMonitor and PrometheusRule (as where their CRDs exist)",
    )
    parser.add_argument(
        "--kube-version",
        type=_kube_version,
        metavar="MAJOR.MINOR",
        help="render for this Kubernetes version (default: the newest; "
        f"supported from {OLDEST[0]}.{OLDEST[1]})",
    )
    args = parser.parse_args(argv)
    try:
        text = sys.stdin.read() if args.filename == "-" else Path(args.filename).read_text()
        options = RenderOptions(
            prometheus_operator=args.prometheus_operator, kube_version=args.kube_version
        )
        objects = render_documents(text, options, args.namespace)
    except (OSError, yaml.YAMLError, ValueError) as err:
        print(f"infleet render: {args.filename}: {err}", file=sys.stderr)
        return 1
    if not objects:
        print(f"infleet render: {args.filename}: no InferenceService found", file=sys.stderr)
        return 1
    sys.stdout.write(dump_all(objects))
    return 0


def _kube_version(value: str) -> KubeVersion:
    major, _, minor = value.removeprefix("v").partition(".")
    try:
        version = parse_version(major, minor)
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected MAJOR.MINOR such as 1.30, got {value!r}"
        ) from err
    if version < OLDEST:
        raise argparse.ArgumentTypeError(
            f"Kubernetes {value} is older than the oldest supported, {OLDEST[0]}.{OLDEST[1]}"
        )
    return version


def _engine_image(value: str) -> tuple[str, str]:
    kind, sep, image = value.partition("=")
    if not sep or kind not in ENGINES or not image:
        raise argparse.ArgumentTypeError(f"expected KIND=IMAGE with KIND in {sorted(ENGINES)}")
    return kind, image


def operator_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="infleet operator", description="Run the operator.")
    parser.add_argument(
        "--kubeconfig",
        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster)",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch this namespace (repeatable; globs allowed)",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch every namespace (default)"
    )
    parser.add_argument("--metrics-port", type=int, default=8080, help="/metrics port; 0: off")
    parser.add_argument("--liveness-port", type=int, default=8081, help="/healthz port; 0: off")
    parser.add_argument(
        "--standalone",
        action="store_true",
        help="no peering with other operator replicas (kopf --standalone)",
    )
    parser.add_argument(
        "--fetcher-image",
        default=DEFAULT_FETCHER_IMAGE,
        help="model fetch init container (args: SOURCE DEST)",
    )
    parser.add_argument(
        "--engine-image",
        type=_engine_image,
        action="append",
        default=[],
        metavar="KIND=IMAGE",
        help="default image of an engine kind",
    )
    parser.add_argument(
        "--prometheus-url",
        metavar="URL",
        help="read the engines' metrics for autoscaling from this Prometheus HTTP API "
        "(e.g. http://prometheus-operated.monitoring:9090) instead of scraping each pod",
    )
    args = parser.parse_args(argv)
    if args.prometheus_url and not args.prometheus_url.startswith(("http://", "https://")):
        parser.error(f"--prometheus-url must be an http(s) URL, got {args.prometheus_url!r}")

    import kopf
    from prometheus_client import start_http_server

    from infleet.autoscaler.prometheus_api import PrometheusSource
    from infleet.operator import handlers  # noqa: F401  (registers the handlers)
    from infleet.operator.kube import Kube, load_config
    from infleet.operator.runtime import Runtime

    runtime = Runtime(
        Kube(load_config(args.kubeconfig)),
        args.fetcher_image,
        dict(args.engine_image),
        prometheus=PrometheusSource(args.prometheus_url) if args.prometheus_url else None,
    )
    if args.metrics_port:
        start_http_server(args.metrics_port)
    liveness = f"http://0.0.0.0:{args.liveness_port}/healthz" if args.liveness_port else None
    kopf.run(
        standalone=args.standalone,
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=liveness,
        memo=kopf.Memo(runtime=runtime),
    )
    return 0

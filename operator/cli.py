"""`infleet render -f FILE`: print the children the operator would create, for review."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from infleet.api import InferenceService
from infleet.api.lora_adapter import LoRAAdapter
from infleet.operator.errors import SpecError, describe
from infleet.operator.kube_versions import OLDEST, KubeVersion, parse_version
from infleet.operator.policy import load_policy
from infleet.operator.render import RenderOptions, render_children


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_all(objects: Iterable[dict[str, Any]]) -> str:
    return yaml.dump_all(objects, Dumper=_NoAliases, sort_keys=False, width=100)


def adapters_of(docs: list[Any], namespace: str, name: str, default_ns: str) -> list[str]:
    """Served names of the LoRAAdapters among `docs` aimed at InferenceService
    namespace/name (adapters that do not validate are left out)."""
    out = []
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") != "LoRAAdapter":
            continue
        meta = doc.get("metadata") or {}
        doc = {**doc, "metadata": {**meta, "namespace": meta.get("namespace") or default_ns}}
        try:
            adapter = LoRAAdapter.model_validate(doc)
        except ValidationError:
            continue
        if adapter.service_key() == (namespace, name):
            out.append(adapter.served_name())
    return out


def render_documents(text: str, options: RenderOptions, namespace: str) -> list[dict[str, Any]]:
    """Children of every InferenceService in `text` (its router accepting the names of
    the LoRAAdapters in `text` aimed at it); ValueError names the bad field."""
    out: list[dict[str, Any]] = []
    docs = list(yaml.safe_load_all(text))
    for index, doc in enumerate(docs):
        if not isinstance(doc, dict) or doc.get("kind") != "InferenceService":
            continue
        meta = doc.get("metadata") or {}
        label = f"document {index + 1} (InferenceService {meta.get('name', '?')})"
        if not meta.get("name"):
            raise ValueError(f"{label}: metadata.name: Field required")
        doc = {**doc, "metadata": {**meta, "namespace": meta.get("namespace") or namespace}}
        try:
            adapters = adapters_of(docs, doc["metadata"]["namespace"], meta["name"], namespace)
            out += render_children(InferenceService.model_validate(doc), options, adapters)
        except ValidationError as err:
            raise ValueError(f"{label}: {describe(err)}") from err
        except SpecError as err:
            raise ValueError(f"{label}: {err.located()}") from err
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
        "--leader-worker-set",
        action="store_true",
        help="render replicas across nodes as LeaderWorkerSets (as where its CRD exists)",
    )
    parser.add_argument(
        "--kube-version",
        type=_kube_version,
        metavar="MAJOR.MINOR",
        help="render for this Kubernetes version (default: the newest; "
        f"supported from {OLDEST[0]}.{OLDEST[1]})",
    )
    parser.add_argument(
        "--platform-policy",
        type=Path,
        metavar="FILE",
        help="check the services against this platform policy, as the operator would",
    )
    parser.add_argument(
        "--namespace-label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a label of the services' namespace, for the policy's namespaceSelector rules",
    )
    args = parser.parse_args(argv)
    try:
        text = sys.stdin.read() if args.filename == "-" else Path(args.filename).read_text()
        labels = dict(_label(item) for item in args.namespace_label)
        options = RenderOptions(
            prometheus_operator=args.prometheus_operator,
            leader_worker_set=args.leader_worker_set,
            kube_version=args.kube_version,
            platform=load_policy(args.platform_policy) if args.platform_policy else None,
            namespace_labels=labels,
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


def _label(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ValueError(f"--namespace-label: expected KEY=VALUE, got {item!r}")
    return key, value


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

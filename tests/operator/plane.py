"""An emulated API server (infleet.localplane, no kubelet) in a background thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from infleet.api.crds import all_crds


@contextmanager
def running_plane(workdir: Path) -> Iterator[Path]:
    """Yields a kubeconfig for a fresh API server with our CRDs installed."""
    from kubernetes import client

    from infleet.localplane.plane import LocalPlane, PlaneConfig
    from infleet.operator.kube import load_config

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    plane = LocalPlane(PlaneConfig(workloads=False, workdir=workdir))
    asyncio.run_coroutine_threadsafe(plane.start(), loop).result(30)
    try:
        kubeconfig = plane.write_kubeconfig(workdir / "kubeconfig")
        extensions = client.ApiextensionsV1Api(load_config(str(kubeconfig)))
        for crd in all_crds():
            extensions.create_custom_resource_definition(crd)
        yield kubeconfig
    finally:
        asyncio.run_coroutine_threadsafe(plane.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)

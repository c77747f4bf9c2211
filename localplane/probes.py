"""Container probes (httpGet, tcpSocket, exec) with the kubelet's defaults."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp

Obj = dict[str, Any]


@dataclass(slots=True)
class ProbeSpec:
    handler: Obj
    initial_delay: float
    period: float
    timeout: float
    success_threshold: int
    failure_threshold: int

    @classmethod
    def of(cls, probe: Obj) -> ProbeSpec:
        return cls(
            probe,
            float(probe.get("initialDelaySeconds", 0)),
            float(probe.get("periodSeconds", 10)),
            float(probe.get("timeoutSeconds", 1)),
            int(probe.get("successThreshold", 1)),
            int(probe.get("failureThreshold", 3)),
        )


def _port(value: int | str, container: Obj) -> int:
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    for p in container.get("ports") or []:
        if p.get("name") == value:
            return int(p["containerPort"])
    raise ValueError(f"no container port named {value!r}")


async def probe_once(
    spec: ProbeSpec,
    pod_ip: str,
    container: Obj,
    env: dict[str, str],
    cwd: str,
    session: aiohttp.ClientSession,
) -> tuple[bool, str]:
    """(success, failure message) of one probe."""
    h = spec.handler
    try:
        if "httpGet" in h:
            g = h["httpGet"]
            url = (
                f"{g.get('scheme', 'HTTP').lower()}://{g.get('host') or pod_ip}:"
                f"{_port(g['port'], container)}{g.get('path', '/')}"
            )
            headers = {x["name"]: x["value"] for x in g.get("httpHeaders") or []}
            async with session.get(
                url, headers=headers, timeout=aiohttp.ClientTimeout(total=spec.timeout)
            ) as r:
                ok = 200 <= r.status < 400
                return ok, "" if ok else f"HTTP probe failed with statuscode: {r.status}"
        if "tcpSocket" in h:
            t = h["tcpSocket"]
            fut = asyncio.open_connection(t.get("host") or pod_ip, _port(t["port"], container))
            _, writer = await asyncio.wait_for(fut, spec.timeout)
            writer.close()
            return True, ""
        if "exec" in h:
            proc = await asyncio.create_subprocess_exec(
                *h["exec"]["command"],
                env=env,
                cwd=cwd,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            try:
                code = await asyncio.wait_for(proc.wait(), spec.timeout)
            except asyncio.TimeoutError:
                proc.kill()
                return False, f"command timed out after {spec.timeout:g}s"
            return code == 0, "" if code == 0 else f"command exited with {code}"
        return False, "probe handler not emulated (grpc)"
    except (OSError, aiohttp.ClientError, asyncio.TimeoutError, ValueError) as err:
        return False, f"probe failed: {type(err).__name__}: {err}"

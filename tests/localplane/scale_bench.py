"""Controller throughput on hollow pods: N Deployments x 2 replicas until all available.

.venv/bin/python -m tests.localplane.scale_bench 500
"""

import sys
import time

from infleet.localplane.nodes import NodeGroup, NodePool
from tests.localplane.harness import RunningPlane, fast_config
from tests.localplane.pods import deployment


def main(n: int) -> None:
    config = fast_config(hollow_pods=True, node_pool=NodePool([NodeGroup("n", 20, 100)]))
    plane = RunningPlane(config)
    try:
        p = plane.plane
        rt = p.registry.get("apps", "v1", "deployments")
        start = time.monotonic()
        container = {"name": "c", "image": "x", "command": ["x"]}

        def create() -> None:
            for i in range(n):
                p.api.create(rt, "default", deployment(f"d{i}", "default", 2, container), "bench")

        def available() -> int:
            return sum(
                1
                for d in p.store.items(rt.key)
                if (d.get("status") or {}).get("availableReplicas") == 2
            )

        plane.call(create)
        created = time.monotonic() - start
        while plane.call(available) < n:
            time.sleep(0.2)
        print(
            f"{n} Deployments x 2 hollow pods: created in {created:.1f} s, "
            f"all available after {time.monotonic() - start:.1f} s"
        )
    finally:
        plane.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)

"""A PNG of one run: load, replicas per pool, latency. matplotlib (the dev extra) draws it
on the Agg backend; without matplotlib the simulator still runs and says what is missing."""

from __future__ import annotations

from pathlib import Path

from infleet.autoscaler.simulator.run import RunOutcome


class PlotUnavailable(RuntimeError):
    pass


def require_matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable(
            "--plot needs matplotlib: pip install matplotlib (or infleet[dev])"
        ) from None
    return plt


def plot_run(run: RunOutcome, path: str | Path) -> Path:
    plt = require_matplotlib()
    tl, s = run.timeline, run.scenario
    hours = [t / 3600.0 for t in tl.t]
    fig, (load, pools, latency) = plt.subplots(3, 1, figsize=(11, 8), sharex=True)
    fig.suptitle(f"{s.name} under {run.policy} (seed {run.seed})")
    load.plot(hours, tl.load_rps, color="black", linewidth=0.8)
    load.set_ylabel("requests/s")
    ded, spot = tl.ready["dedicated"], tl.ready["spot"]
    pools.stackplot(hours, ded, spot, labels=["dedicated ready", "spot ready"],
                    colors=["#3b6ea8", "#e59c3b"], alpha=0.8)  # fmt: skip
    desired = [a + b for a, b in zip(tl.desired["dedicated"], tl.desired["spot"], strict=True)]
    pools.plot(hours, desired, color="black", linewidth=0.7, linestyle="--", label="desired")
    pools.set_ylabel("replicas")
    pools.legend(loc="upper left", fontsize=8)
    target = s.spec.slo.ttft_p95_seconds
    latency.plot(hours, tl.ttft_p95_s, color="#b03a2e", linewidth=0.8, label="TTFT p95 / min")
    latency.axhline(target, color="grey", linestyle=":", label=f"TTFT target {target:g} s")
    latency.set_yscale("log")
    latency.set_ylabel("seconds")
    latency.set_xlabel("hours")
    latency.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out

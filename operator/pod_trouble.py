"""Why a service's pods cannot start their engine: the model fetch failing, or the engine
refusing the model it was given.

A fetch that fails (a 401 from a gated model, a missing Secret, a wrong URI) leaves the
pod in Init:Error / Init:CrashLoopBackOff, which no Deployment condition reports, so the
operator reads it from the pods it already watches and says it in `Degraded`
(`ModelFetchFailed`), with the fetcher's last log lines (terminationMessagePolicy
FallbackToLogsOnError), which carry the URI and status, never the credentials.

The operator cannot know a model's architecture before it is downloaded; the bundled
engine refuses an unsupported one (or a checkpoint that disagrees with its config) at
start-up with exit code 2 and one line in its termination-message file, which the
kubelet puts in the container's terminated state: `EngineRefusedModel`.
"""

from __future__ import annotations

from typing import Any

FETCH = "fetch-model"
ENGINE = "engine"
REFUSED_EXIT_CODE = 2  # the bundled engine's "this model/config cannot be served"
MESSAGE_CHARS = 400
# Waiting reasons of a container that cannot start (a missing Secret or key, a bad image).
STUCK = {"CreateContainerConfigError", "ErrImagePull", "ImagePullBackOff", "InvalidImageName"}


def _failed(state: dict[str, Any]) -> str | None:
    done = state.get("terminated")
    if done and done.get("exitCode", 0) != 0:
        detail = (done.get("message") or "").strip() or done.get("reason") or "Error"
        return f"exit code {done['exitCode']}: {detail}"
    waiting = state.get("waiting") or {}
    if waiting.get("reason") in STUCK:
        return f"{waiting['reason']}: {waiting.get('message') or ''}".strip(": ")
    return None


def fetch_trouble(pod: dict[str, Any]) -> str | None:
    """The model fetch's failure in this pod (its own or its last run's), else None."""
    for status in (pod.get("status") or {}).get("initContainerStatuses") or []:
        if status.get("name") != FETCH:
            continue
        why = _failed(status.get("state") or {}) or _failed(status.get("lastState") or {})
        if why:
            # A fetch's log ends with its error: keep the end.
            return _one_line(why, keep_end=True)
    return None


def fetch_failures(pods: list[dict[str, Any]]) -> list[str]:
    """`pod NAME: the model fetch failed: ...` for each pod whose fetch failed."""
    out = []
    for pod in pods:
        trouble = pod.get("fetchTrouble")
        if trouble:
            out.append(f"pod {pod['metadata']['name']}: the model fetch failed ({trouble})")
    return sorted(out)


def engine_refusal(pod: dict[str, Any]) -> str | None:
    """The engine container's refusal message (its current or last run), else None. Only
    an exit code 2 with a termination message counts: a crash is not a refusal."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") != ENGINE:
            continue
        for state in (status.get("state") or {}, status.get("lastState") or {}):
            done = state.get("terminated") or {}
            message = (done.get("message") or "").strip()
            if done.get("exitCode") == REFUSED_EXIT_CODE and message:
                return _one_line(message, keep_end=False)
    return None


def _one_line(text: str, *, keep_end: bool) -> str:
    """A multi-line message as one condition line (` / ` between its non-blank lines),
    cut to MESSAGE_CHARS at the end it does not keep."""
    line = " / ".join(part for part in text.splitlines() if part.strip())
    if len(line) <= MESSAGE_CHARS:
        return line
    return "..." + line[-MESSAGE_CHARS:] if keep_end else line[:MESSAGE_CHARS] + "..."


def engine_refusals(pods: list[dict[str, Any]]) -> list[str]:
    """`pod NAME: the engine refused the model: ...` for each pod whose engine did."""
    out = []
    for pod in pods:
        refusal = pod.get("engineRefusal")
        if refusal:
            out.append(f"pod {pod['metadata']['name']}: the engine refused the model ({refusal})")
    return sorted(out)

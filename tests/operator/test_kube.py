"""Every Kubernetes request the operator makes is bounded: its own through Kube.call (a
timeout, failures counted, writes fenced by the lease), kopf's through its settings."""

from __future__ import annotations

import re
from types import SimpleNamespace

import kopf

from infleet.operator.settings import UNUSED_FINALIZER, configure
from tests.conftest import REPO

# A kubernetes-client API object of Kube's, called directly instead of through call().
DIRECT = re.compile(r"\.(core|apps|policy|custom|coordination|version)\.\w+\(")


def test_no_client_method_is_called_around_the_bounded_call():
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in sorted((REPO / "operator").glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if DIRECT.search(line)
    ]
    assert found == []


def test_kopf_requests_time_out_it_posts_nothing_and_owns_no_finalizer():
    settings = kopf.OperatorSettings()
    memo = kopf.Memo(runtime=SimpleNamespace(kube=SimpleNamespace(timeout=7.0)))
    configure(settings=settings, memo=memo)
    assert settings.networking.request_timeout == settings.networking.connect_timeout == 7.0
    assert settings.watching.connect_timeout == 7.0
    assert settings.watching.client_timeout and settings.watching.server_timeout
    assert settings.posting.enabled is False
    assert settings.persistence.finalizer == UNUSED_FINALIZER

"""kopf logs in with the same credentials as our client (so --kubeconfig is honoured) and
names itself the same way, so an API server's audit log tells the replicas apart."""

from __future__ import annotations

import dataclasses
from typing import Any

import kopf


@dataclasses.dataclass(frozen=True, kw_only=True)
class Connection(kopf.ConnectionInfo):
    user_agent: str = ""

    def as_http_headers(self) -> dict[str, str]:
        # kopf sets its own User-Agent only where the session has none.
        return {**super().as_http_headers(), "User-Agent": self.user_agent}


@kopf.on.login()
def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    kube = memo.runtime.kube
    conf = kube.configuration
    header = conf.get_api_key_with_prefix("BearerToken") or conf.get_api_key_with_prefix(
        "authorization"
    )
    scheme, _, token = (header or "").rpartition(" ")
    return Connection(
        server=conf.host,
        ca_path=conf.ssl_ca_cert,
        insecure=not conf.verify_ssl,
        username=conf.username or None,
        password=conf.password or None,
        scheme=scheme or ("Bearer" if token else None),
        token=token or None,
        certificate_path=conf.cert_file,
        private_key_path=conf.key_file,
        user_agent=kube.user_agent,
    )

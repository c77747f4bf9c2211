"""The scrape pool against real sockets: services isolated from each other's black-holed
pods, timeouts, body limits, backoff, and a 4xx as a permanent state."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from infleet.autoscaler.scrape import ScrapeLimits, ScrapePool, ScrapeTarget

PAGE = b"""# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="m"} 2.0
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 5.0
"""


@contextmanager
def http_server(respond: Callable[[BaseHTTPRequestHandler], None]) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            respond(self)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def black_hole() -> Iterator[str]:
    """Accepts connections and never answers (a NetworkPolicy that drops, a hung pod)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/metrics"
    finally:
        stop.set()
        thread.join(2)
        for s in held:
            s.close()
        listener.close()


def page(handler: BaseHTTPRequestHandler, body: bytes = PAGE, status: int = 200) -> None:
    handler.send_response(status)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.fixture(scope="module")
def healthy() -> Iterator[str]:
    with http_server(page) as url:
        yield url


def pool(**limits) -> ScrapePool:
    return ScrapePool(ScrapeLimits(**{"timeout_s": 1.0, "per_service": 2, **limits}), workers=4)


def test_a_services_black_holed_pods_do_not_delay_another_service(healthy):
    p = pool(deadline_s=8.0)
    with black_hole() as hole:
        stuck = [ScrapeTarget(f"a-{i}", "spot", hole) for i in range(8)]
        fine = [ScrapeTarget(f"b-{i}", "spot", healthy) for i in range(2)]
        done: dict[str, object] = {}
        slow = threading.Thread(target=lambda: done.update(a=p.scrape("a", stuck, "vllm", 0.0)))
        slow.start()
        time.sleep(0.2)  # service a holds its share of the pool now
        started = time.monotonic()
        result = p.scrape("b", fine, "vllm", 0.0)
        took = time.monotonic() - started
        slow.join(15)
    assert [m.pod for m in result.metrics] == ["b-0", "b-1"] and not result.failures
    assert took < 0.8, took  # a's eight reads take 1 s each, two at a time
    a = done["a"]
    assert len(a.failures) == 8 and {f.reason for f in a.failures} == {"Timeout"}
    assert not a.metrics


def test_a_failed_target_backs_off_instead_of_being_read_every_tick(healthy):
    p = pool()
    with black_hole() as hole:
        targets = [ScrapeTarget("a-0", "spot", hole), ScrapeTarget("a-1", "spot", healthy)]
        first = p.scrape("a", targets, "vllm", 0.0)
        assert [f.target for f in first.failures] == ["a-0"] and len(first.metrics) == 1
        started = time.monotonic()
        second = p.scrape("a", targets, "vllm", 5.0)  # within the 10 s backoff
        assert time.monotonic() - started < 0.5 and not second.failures
        assert [f.target for f in second.waiting] == ["a-0"] and second.waiting[0].since == 0.0
        third = p.scrape("a", targets, "vllm", 11.0)  # tried again: fails, backs off 20 s
        assert [f.target for f in third.failures] == ["a-0"]
        assert [f.target for f in p.scrape("a", targets, "vllm", 25.0).waiting] == ["a-0"]


def test_a_4xx_is_a_permanent_state_until_the_pod_changes(healthy):
    p = pool()
    with http_server(lambda h: page(h, b"forbidden", 403)) as forbidden:
        target = ScrapeTarget("a-0", "spot", forbidden)
        (failure,) = p.scrape("a", [target], "vllm", 0.0).failures
        assert failure.permanent and failure.reason == "Rejected" and "403" in failure.message
        later = p.scrape("a", [target], "vllm", 200.0)
        assert later.waiting == [failure] and not later.failures  # not asked again
        moved = p.scrape("a", [ScrapeTarget("a-0", "spot", healthy)], "vllm", 201.0)
        assert len(moved.metrics) == 1 and not moved.waiting  # a new address: read at once


@pytest.mark.parametrize(
    ("respond", "reason"),
    [
        (lambda h: page(h, b"x" * (64 << 10)), "TooLarge"),
        (lambda h: page(h, b"# TYPE something_else gauge\nsomething_else 1\n"), "BadMetrics"),
        (lambda h: page(h, b"", 503), "HTTPError"),
    ],
)
def test_bad_pages_are_failures_that_name_why(respond, reason):
    p = pool(max_body_bytes=32 << 10)
    with http_server(respond) as url:
        (failure,) = p.scrape("a", [ScrapeTarget("a-0", "spot", url)], "vllm", 0.0).failures
    assert failure.reason == reason and not failure.permanent


def test_a_trickling_page_is_cut_off_at_the_timeout():
    def trickle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.end_headers()
        for _ in range(40):
            h.wfile.write(b"# comment\n")
            h.wfile.flush()
            time.sleep(0.1)

    p = pool(timeout_s=0.5)
    with http_server(trickle) as url:
        started = time.monotonic()
        (failure,) = p.scrape("a", [ScrapeTarget("a-0", "spot", url)], "vllm", 0.0).failures
    assert failure.reason == "Timeout" and time.monotonic() - started < 2.0


def test_a_refused_connection_is_a_connect_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/metrics"  # bound, not listening
        (failure,) = pool().scrape("a", [ScrapeTarget("a-0", "spot", url)], "vllm", 0.0).failures
    assert failure.reason == "ConnectError" and failure.source == "scrape"

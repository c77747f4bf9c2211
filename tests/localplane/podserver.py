"""A small HTTP server that tests run as a pod's container on the process kubelet.

GET /health (readiness), /live (fails once --live-for seconds passed), /whoami (the pod
name), /slow?s=SECONDS. SIGTERM: stop accepting, finish in-flight requests, print
"drained", exit 0 (unless --ignore-term). --exit-after S: exit with code 3 after S.
"""

import argparse
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--config")
    p.add_argument("--ignore-term", action="store_true")
    p.add_argument("--exit-after", type=float)
    p.add_argument("--live-for", type=float)
    args = p.parse_args()
    started = time.monotonic()
    if args.config:
        print("config:", Path(args.config).read_text().strip(), flush=True)
    print("greeting:", os.environ.get("GREETING", ""), flush=True)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            code, body = 200, "ok"
            if url.path == "/whoami":
                body = os.environ.get("POD_NAME", "")
            elif url.path == "/slow":
                time.sleep(float(parse_qs(url.query).get("s", ["1"])[0]))
                body = "done"
            elif (
                url.path == "/live" and args.live_for and time.monotonic() - started > args.live_for
            ):
                code = 500
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *a: object) -> None:
            pass

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = False  # server_close() waits for in-flight requests
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    if args.exit_after is not None:
        threading.Timer(args.exit_after, lambda: os._exit(3)).start()
    print("serving", flush=True)
    server.serve_forever()
    server.server_close()
    print("drained", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()

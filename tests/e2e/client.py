# A chat-completion client run inside a pod (python -c): stdlib only.
# argv: URL (an OpenAI base URL), N concurrent requests, max_tokens, prompt.
# Prints "started <time>", then one JSON line: [{status, content, finish, start, end}].
import json
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

url, n, max_tokens, prompt = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
body = json.dumps(
    {
        "model": "smollm2-135m-instruct",
        "max_tokens": max_tokens,
        "temperature": 0,
        "messages": [{"role": "user", "content": prompt}],
    }
).encode()


def one(_: int) -> dict:
    start = time.time()
    req = urllib.request.Request(
        url.rstrip("/") + "/chat/completions",
        data=body,
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            out = json.loads(r.read())
            status = r.status
    except urllib.error.HTTPError as err:
        return {
            "status": err.code,
            "error": err.read().decode(),
            "start": start,
            "end": time.time(),
        }
    except OSError as err:  # a dropped connection: report it, the test decides
        return {"status": 0, "error": repr(err), "start": start, "end": time.time()}
    choice = out["choices"][0]
    return {
        "status": status,
        "content": choice["message"]["content"],
        "finish": choice["finish_reason"],
        "start": start,
        "end": time.time(),
    }


print("started", time.time(), flush=True)
with ThreadPoolExecutor(n) as pool:
    print(json.dumps(list(pool.map(one, range(n)))), flush=True)

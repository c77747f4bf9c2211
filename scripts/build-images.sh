#!/usr/bin/env bash
# Builds infleet's container images from images/Dockerfile (and pushes them with --push).
#
#   scripts/build-images.sh [options] [operator] [engine-cpu] [engine-cuda]   (default: all)
#
#   --registry R     image names' prefix (default ghcr.io/infleet)
#   --tag T          tag (default: infleet's version, from infleet/__init__.py); the engine
#                    images get T-cpu and T-cuda
#   --base IMAGE     the Debian bookworm + python3.11 base (default: the Dockerfile's,
#                    python:3.11-slim-bookworm); a locally imported one where no registry is
#                    reachable (docs/operations.md shows one made with mmdebstrap)
#   --wheel FILE     a wheel the build may take from the context instead of its index
#                    (hash-checked against images/requirements/ all the same); repeatable
#   --pip-ca FILE    a CA bundle for pip behind a TLS-intercepting proxy (a build secret:
#                    it never lands in a layer)
#   --build-arg K=V  passed to the build (e.g. PIP_RETRIES=0 where the CPU torch index is
#                    out of reach and --wheel brings torch); repeatable
#   --push           push each image after building it
#   --print-names    print "IMAGE NAME" for each image and exit (tests read the names here)
#
# The builder: docker (BuildKit) where it runs, else buildah (daemonless; for a machine
# without a container runtime: STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot). INFLEET_BUILDER
# picks one. Image builds are not part of CI (.ci/run); the release workflow runs this.
set -euo pipefail
cd "$(dirname "$0")/.."

registry=ghcr.io/infleet
tag=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' infleet/__init__.py)
base=""
pip_ca=""
push=false
print_names=false
wheels=()
build_args=()
images=()
while [ $# -gt 0 ]; do
    case "$1" in
        --registry) registry=$2; shift 2 ;;
        --tag) tag=$2; shift 2 ;;
        --base) base=$2; shift 2 ;;
        --wheel) wheels+=("$2"); shift 2 ;;
        --pip-ca) pip_ca=$2; shift 2 ;;
        --build-arg) build_args+=(--build-arg "$2"); shift 2 ;;
        --push) push=true; shift ;;
        --print-names) print_names=true; shift ;;
        operator | engine-cpu | engine-cuda) images+=("$1"); shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-images: unknown argument: $1 (--help lists them)" >&2; exit 2 ;;
    esac
done
[ ${#images[@]} -gt 0 ] || images=(operator engine-cpu engine-cuda)
[ -n "$tag" ] || { echo "build-images: no version in infleet/__init__.py" >&2; exit 2; }

name_of() {
    case "$1" in
        operator) echo "$registry/infleet-operator:$tag" ;;
        engine-cpu) echo "$registry/infleet-engine:$tag-cpu" ;;
        engine-cuda) echo "$registry/infleet-engine:$tag-cuda" ;;
    esac
}

if $print_names; then
    for image in "${images[@]}"; do echo "$image $(name_of "$image")"; done
    exit 0
fi

builder=${INFLEET_BUILDER:-}
if [ -z "$builder" ]; then
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
        builder=docker
    elif command -v buildah >/dev/null; then
        builder=buildah
    else
        echo "build-images: neither docker (running) nor buildah found" >&2
        exit 1
    fi
fi

for wheel in ${wheels[@]+"${wheels[@]}"}; do
    [ -f "$wheel" ] || { echo "build-images: --wheel: no such file: $wheel" >&2; exit 2; }
    cp -l "$wheel" images/wheels/ 2>/dev/null || cp "$wheel" images/wheels/
done

for image in "${images[@]}"; do
    name=$(name_of "$image")
    target=${image%%-*}  # operator | engine
    args=(-f images/Dockerfile --target "$target" --build-arg "REQUIREMENTS=$image" -t "$name")
    [ -z "$base" ] || args+=(--build-arg "BASE=$base")
    [ -z "$pip_ca" ] || args+=(--secret "id=pip-ca,src=$pip_ca")
    args+=(${build_args[@]+"${build_args[@]}"})
    echo "build-images: $name ($builder)"
    if [ "$builder" = docker ]; then
        DOCKER_BUILDKIT=1 docker build "${args[@]}" .
    else
        buildah build "${args[@]}" .
    fi
    if $push; then
        "$builder" push "$name"
    fi
done

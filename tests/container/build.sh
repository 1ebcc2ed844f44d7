#!/usr/bin/env bash
# Build docker/Dockerfile for the container rehearsal (`make container-test`), without a Docker daemon or a
# container registry: podman, on a Debian bookworm base made here from Debian's packages (debootstrap), which
# stands in for the Dockerfile's default base, debian:bookworm-slim. Prints the image name as its last line.
#
# Every setting for this machine is here, with a default that can be overridden; the Dockerfile holds none:
#   BSM_IMAGE          image to build (default localhost/bsm-nb:rehearsal)
#   BSM_BASE_IMAGE     the base, made once and kept in podman's store (default localhost/bsm-rehearsal-base:bookworm);
#                      BSM_REBUILD_BASE=1 makes it anew
#   BSM_DEBIAN_MIRROR  where debootstrap gets bookworm (default http://deb.debian.org/debian)
#   BSM_CA_CERTS       extra CA certificates the base trusts, for a TLS-intercepting proxy
#                      (default: /usr/local/share/ca-certificates/*.crt)
#   BSM_WHEELS_DIR     a folder of wheels mounted into the build, which pip may take files from (default none); each
#                      must match a hash in docker/requirements.lock, as every file from PyPI must
#   BSM_TORCH_WHEEL    a torch wheel (default none: the lock's torch, PyPI's CUDA build, as in production, about 3 GB
#                      of wheels, downloaded once and kept in the build cache). Given, the base gets python3 and this
#                      wheel first (its dependencies from PyPI, unhashed: it stands for a Deep Learning Container), and
#                      the image keeps that torch, as on any base with its own: a quicker, CPU-only rehearsal on this
#                      kind of machine:
#                      BSM_TORCH_WHEEL=/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl
#   BSM_BUILD_ARGS     more `podman build` arguments, split on spaces
#   CONTAINERS_CONF    podman's settings (default tests/container/containers.conf)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../.." && pwd)"
image="${BSM_IMAGE:-localhost/bsm-nb:rehearsal}"
base="${BSM_BASE_IMAGE:-localhost/bsm-rehearsal-base:bookworm}"
mirror="${BSM_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"

say() { echo "container-test: $*" >&2; }
die() { say "$*"; exit 2; }

# --- the tools: podman, runc and debootstrap, from Debian's packages --------------------------------
missing=()
for tool in podman runc debootstrap; do
    command -v "$tool" > /dev/null 2>&1 || [[ -x "/usr/sbin/$tool" ]] || missing+=("$tool")
done
if ((${#missing[@]})); then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get > /dev/null 2>&1; then
        say "installing ${missing[*]} from Debian's packages"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman runc debootstrap > /dev/null
    else
        die "missing ${missing[*]}: the rehearsal builds and runs the image with podman (runc) as root, on a base made by debootstrap. On Debian or Ubuntu: sudo apt-get install podman runc debootstrap, then run it as root (sudo make container-test)"
    fi
fi
[[ "$(id -u)" == 0 ]] || die "the rehearsal runs as root (debootstrap and rootful podman): sudo make container-test"
PATH="$PATH:/usr/sbin:/sbin"

# --- the base: debootstrap bookworm -> podman import, kept in podman's store ------------------------
if [[ "${BSM_REBUILD_BASE:-0}" == 1 ]] || ! podman image exists "$base"; then
    say "making the base $base from Debian bookworm ($mirror)"
    rootfs="$(mktemp -d "${TMPDIR:-/var/tmp}/bsm-rehearsal-base.XXXXXX")"
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" > "$rootfs.log" 2>&1 \
        || { tail -20 "$rootfs.log" >&2; die "debootstrap failed (log above)"; }
    rm -f "$rootfs.log"
    # the package lists of debian:bookworm-slim: the release, its updates and security fixes
    rm -f "$rootfs/etc/apt/sources.list"
    printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: %s\nSuites: bookworm-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$mirror" "${mirror%/debian}/debian-security" > "$rootfs/etc/apt/sources.list.d/debian.sources"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    # a TLS-intercepting proxy's CA: trusted by ca-certificates once the image installs it, and by pip through PIP_CERT
    changes=(--change 'CMD ["bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin')
    shopt -s nullglob
    # shellcheck disable=SC2206  # BSM_CA_CERTS is a list of paths or globs
    certs=(${BSM_CA_CERTS:-/usr/local/share/ca-certificates/*.crt})
    if ((${#certs[@]})); then
        mkdir -p "$rootfs/usr/local/share/ca-certificates" "$rootfs/etc/ssl/certs"
        cp "${certs[@]}" "$rootfs/usr/local/share/ca-certificates/"
        bundle=/etc/ssl/certs/bsm-rehearsal-ca.crt
        if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then cat /etc/ssl/certs/ca-certificates.crt > "$rootfs$bundle"; fi
        cat "${certs[@]}" >> "$rootfs$bundle"
        changes+=(--change "ENV PIP_CERT=$bundle" --change "ENV SSL_CERT_FILE=$bundle" --change "ENV REQUESTS_CA_BUNDLE=$bundle")
    fi
    tar -C "$rootfs" -c . | podman import "${changes[@]}" - "$base" > /dev/null
    rm -rf "$rootfs"; trap - EXIT
fi

# --- a base that brings its own torch (BSM_TORCH_WHEEL), as an AWS Deep Learning Container does ----------
torch_wheel="${BSM_TORCH_WHEEL:-}"
if [[ -n "$torch_wheel" ]]; then
    [[ -f "$torch_wheel" && "$torch_wheel" == *.whl ]] || die "BSM_TORCH_WHEEL=$torch_wheel is not a wheel file"
    wheel_name="$(basename "$torch_wheel")"
    version="$(cut -d- -f2 <<< "$wheel_name")"
    torch_base="${base%%:*}:torch-${version//+/_}"
    say "making $torch_base: $base with python3 and $wheel_name"
    context="$(mktemp -d "${TMPDIR:-/var/tmp}/bsm-torch-base.XXXXXX")"
    printf '%s\n' "FROM $base" \
        'RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-pip python3-venv && rm -rf /var/lib/apt/lists/*' \
        "RUN pip install --no-cache-dir --break-system-packages /wheel/$wheel_name" > "$context/Containerfile"
    podman build --format docker --network host -v "$(dirname "$torch_wheel"):/wheel:ro" -t "$torch_base" "$context" >&2
    rm -rf "$context"
    base="$torch_base"
fi

# --- the image: the real Dockerfile, with build arguments only --------------------------------------
args=(--format docker --network host -f "$repo_root/docker/Dockerfile" -t "$image" --build-arg "BASE_IMAGE=$base")
wheels="${BSM_WHEELS_DIR:-}"
if [[ -n "$wheels" ]]; then
    [[ -d "$wheels" ]] || die "BSM_WHEELS_DIR=$wheels is not a folder of wheels"
    args+=(-v "$wheels:/wheels:ro" --build-arg WHEELS_DIR=/wheels)
fi
if [[ -n "${BSM_BUILD_ARGS:-}" ]]; then read -r -a extra <<< "$BSM_BUILD_ARGS"; args+=("${extra[@]}"); fi
say "building $image from docker/Dockerfile on $base"
podman build "${args[@]}" "$repo_root" >&2
podman image prune -f > /dev/null 2>&1 || true # the previous build's layers, now untagged
echo "$image"

#!/usr/bin/env bash
# Put nginx 1.18, the oldest release bsm-serve supports (Ubuntu 22.04 and Debian bullseye ship it), in a folder of
# its own for tests/test_serve.py: Debian bullseye's nginx-core and the two libraries bookworm no longer has,
# unpacked with dpkg-deb (nothing is installed), and an `nginx` wrapper that runs it with those libraries.
#   tests/tools/fetch_nginx_1_18.sh [DEST]      (default .cache/nginx-1.18; BSM_DEBIAN_MIRROR overrides the mirror)
# Needs apt-get and dpkg-deb (Debian or Ubuntu), not root. Does nothing when DEST already holds it.
set -euo pipefail

dest="${1:-.cache/nginx-1.18}"
mirror="${BSM_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
if [[ -x "$dest/nginx" ]] && "$dest/nginx" -v 2>&1 | grep -q 'nginx/1\.18\.'; then exit 0; fi
for tool in apt-get dpkg-deb; do
    command -v "$tool" > /dev/null 2>&1 || { echo "fetch_nginx_1_18.sh: $tool is missing: nginx 1.18 comes from Debian's bullseye packages" >&2; exit 2; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs"
printf 'deb %s bullseye main\ndeb %s bullseye-security main\n' "$mirror" "${mirror%/debian}/debian-security" > "$work/sources.list"
# apt with its own lists and cache: the machine's package state is neither read nor changed
apt=(apt-get -qq -o "Dir::Etc::sourcelist=$work/sources.list" -o Dir::Etc::sourceparts=/dev/null
     -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o Debug::NoLocking=1
     -o APT::Sandbox::User="$(id -un)")
"${apt[@]}" update
(cd "$work/debs" && "${apt[@]}" download nginx-core libssl1.1 libpcre3)

rm -rf "$dest.new"
mkdir -p "$dest.new/root"
for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$dest.new/root"; done
cat > "$dest.new/nginx" <<'WRAPPER'
#!/bin/sh
# Debian bullseye's nginx 1.18 with the libraries unpacked beside it
here="$(cd "$(dirname "$0")" && pwd)"
libs=""
for d in "$here"/root/usr/lib/*-linux-gnu "$here"/root/lib/*-linux-gnu; do libs="$libs${libs:+:}$d"; done
LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/root/usr/sbin/nginx" "$@"
WRAPPER
chmod 0755 "$dest.new/nginx"
"$dest.new/nginx" -v 2>&1 | grep -q 'nginx/1\.18\.' || { echo "fetch_nginx_1_18.sh: the unpacked nginx does not run:" >&2; "$dest.new/nginx" -v; exit 1; }
rm -rf "$dest"
mv "$dest.new" "$dest"
echo "nginx 1.18 in $dest/nginx"

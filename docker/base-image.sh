#!/usr/bin/env bash
# Builds a minimal Debian bookworm base image with python3 + venv from the Debian mirror alone
# (debootstrap + `docker import`), for hosts that reach no container registry. The result is a drop-in
# BASE_IMAGE for docker/Dockerfile: `docker build --build-arg BASE_IMAGE=fstcn-base:bookworm ...`.
#
# Usage: docker/base-image.sh [TAG]        (default TAG: fstcn-base:bookworm; env MIRROR, SUITE, FORCE=1)
# An existing image with that tag is kept unless FORCE=1 (the smoke test relies on this cache).
set -euo pipefail

TAG=${1:-fstcn-base:bookworm}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
DOCKER=${DOCKER:-docker}
# python3-venv for the image's virtualenv, ca-certificates for pip, curl for humans debugging a container.
PACKAGES=python3,python3-venv,ca-certificates,curl

if [[ "${FORCE:-0}" != 1 ]] && $DOCKER image inspect "$TAG" >/dev/null 2>&1; then
    echo "base image $TAG already present (FORCE=1 rebuilds it)"
    exit 0
fi

command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }

ROOTFS=$(mktemp -d /tmp/fstcn-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT

echo "debootstrap $SUITE from $MIRROR into $ROOTFS"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 || {
    tail -30 "$ROOTFS.log" >&2
    exit 1
}
rm -f "$ROOTFS.log"

# Trim what a container never needs: apt lists and caches, docs, man pages, non-English locales.
chroot "$ROOTFS" apt-get clean
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
    "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
    "$ROOTFS"/var/log/*.log "$ROOTFS"/tmp/*
find "$ROOTFS"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'en*' ! -name 'locale.alias' \
    -exec rm -rf {} + 2>/dev/null || true
# The same apt sources as the official debian image, so `apt-get update` works in derived images.
printf 'deb %s %s main\ndeb %s %s-updates main\ndeb http://deb.debian.org/debian-security %s-security main\n' \
    "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" "$SUITE" >"$ROOTFS/etc/apt/sources.list"

tar -C "$ROOTFS" --numeric-owner -c . |
    $DOCKER import \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' \
        --message "debootstrap $SUITE minbase + $PACKAGES" \
        - "$TAG" >/dev/null
echo "built $TAG ($($DOCKER image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}'))"

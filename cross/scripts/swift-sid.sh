#!/usr/bin/env bash
# Makes (once) a Debian sid chroot with Debian's `swiftlang` toolchain under .cache/swift-sid, so
# that the host's own libc and packages stay untouched, and prints its path. Idempotent: a chroot
# whose install finished (marker .cache/swift-sid/.installed) is reused as it is; a half-made one
# is removed and made again. Needs root (debootstrap and chroot) and a reachable Debian mirror;
# installs the host's `debootstrap` with apt-get when it is missing.
#
#   cross/scripts/swift-sid.sh            # → /path/to/.cache/swift-sid
#   cross/scripts/swift-sid.sh --unmount  # unmounts what check-swift.sh mounted under it
#   OUTPOST_SID_MIRROR=http://... cross/scripts/swift-sid.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CHROOT="${OUTPOST_SWIFT_CHROOT:-$ROOT/.cache/swift-sid}"
MIRROR="${OUTPOST_SID_MIRROR:-http://deb.debian.org/debian}"

# Unmounts whatever is mounted under the chroot (check-swift.sh mounts /proc and the model);
# fails if something stays mounted.
unmount_all() {
    local m
    for m in $(awk -v root="$CHROOT/" 'index($2, root) == 1 { print $2 }' /proc/mounts | sort -r); do
        umount "$m" 2>/dev/null || umount -l "$m"
    done
    ! awk -v root="$CHROOT/" 'index($2, root) == 1 { found = 1 } END { exit !found }' /proc/mounts
}
if [ "${1:-}" = --unmount ]; then
    unmount_all
    exit
fi

if [ -e "$CHROOT/.installed" ]; then
    echo "$CHROOT"
    exit 0
fi
[ "$(id -u)" = 0 ] || { echo "swift-sid.sh: needs root (debootstrap, chroot)" >&2; exit 1; }
if ! command -v debootstrap >/dev/null && [ ! -x /usr/sbin/debootstrap ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2 ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; } >&2
fi
PATH="$PATH:/usr/sbin:/sbin"

# A half-made chroot may still have its /proc mounted from an interrupted run.
unmount_all || { echo "swift-sid.sh: cannot unmount what is mounted under $CHROOT" >&2; exit 1; }
rm -rf "$CHROOT"
mkdir -p "$(dirname "$CHROOT")"
# The smallest base (no init, no recommends). swiftc needs the C headers (libc6-dev) for
# Foundation and Dispatch; swiftlang depends on the rest (gcc, binutils, its runtime).
debootstrap --variant=minbase sid "$CHROOT" "$MIRROR" >&2

mount -t proc proc "$CHROOT/proc"
trap 'umount -l "$CHROOT/proc" 2>/dev/null || true' EXIT
cp /etc/resolv.conf "$CHROOT/etc/resolv.conf"
chroot "$CHROOT" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends swiftlang libc6-dev >&2
chroot "$CHROOT" apt-get clean
chroot "$CHROOT" swiftc --version >&2
touch "$CHROOT/.installed"
echo "$CHROOT"

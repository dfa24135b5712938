#!/usr/bin/env bash
# Raspberry Pi OS, emulated: Debian bookworm chroots (Pi OS bookworm's base) for arm64 (64-bit Pi OS) and armhf
# (32-bit Pi OS) under qemu-user, the package installed the way README.md ("Raspberry Pi") tells a Pi user, and
# the checks of issue 20: every bundled model bit-exact against this x86 host, `edgelstm tag` equal, the native
# C backend bit-exact, first-run (cold Numba cache) timing.  Needs root (chroot, binfmt); not in CI (tens of
# minutes: everything under arm64 emulation runs ~10x slower).
#
#   sudo bench/pi_emulated.sh build   [arm64|armhf ...]   # mmdebstrap the chroots (once; ~5 min each)
#   sudo bench/pi_emulated.sh check   [arm64|armhf ...]   # install, compare with x86, time the first run
#
# Environment: PI_CHROOTS (default /var/tmp/edgelstm-pi), PI_MIRROR (default http://deb.debian.org/debian),
# PI_CPU (qemu -cpu for arm64, default max: dotprod, so the JIT's sdot path runs).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
root="${PI_CHROOTS:-/var/tmp/edgelstm-pi}"
mirror="${PI_MIRROR:-http://deb.debian.org/debian}"
cmd="${1:-}"; shift || true
arches=("$@"); [ ${#arches[@]} -eq 0 ] && arches=(arm64 armhf)
[ "$(id -u)" = 0 ] || { echo "pi_emulated.sh: needs root (chroot, binfmt)" >&2; exit 2; }

need_tools() {
  command -v mmdebstrap >/dev/null && [ -e /usr/bin/qemu-aarch64-static ] || \
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap qemu-user-static binfmt-support; }
  mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
  update-binfmts --enable qemu-arm >/dev/null 2>&1 || true
}

build() {   # the packages a Pi OS Lite user apt-installs before pip (README "Raspberry Pi")
  local arch=$1 dir="$root/$1" extra="python3,python3-venv,python3-pip,gcc,libc6-dev,make,ca-certificates"
  [ "$arch" = armhf ] && extra="$extra,python3-numpy"      # 32-bit: Debian's numpy (PyPI has no armv7l wheel)
  [ -x "$dir/usr/bin/python3" ] && { echo "$dir exists"; return; }
  mkdir -p "$root"
  mmdebstrap --variant=apt --architectures="$arch" --include="$extra" bookworm "$dir" "$mirror"
}

case "$cmd" in
  build) need_tools; for a in "${arches[@]}"; do build "$a"; done ;;
  check) need_tools   # a copy runs: bash reads a script while it runs, and an edit of the checkout would garble it
         copy=$(mktemp); cp "$here/bench/pi_check_one.sh" "$copy"
         for a in "${arches[@]}"; do PI_HERE="$here" bash "$copy" "$a"; done; rm -f "$copy" ;;
  *) sed -n 2,13p "$0"; exit 2 ;;
esac

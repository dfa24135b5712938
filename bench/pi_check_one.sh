#!/usr/bin/env bash
# One emulated Pi (bench/pi_emulated.sh check ARCH): install as README "Raspberry Pi" says, compare with x86.
set -euo pipefail
arch=$1
here="${PI_HERE:-$(cd "$(dirname "$0")/.." && pwd)}"
root="${PI_CHROOTS:-/var/tmp/edgelstm-pi}"
dir="$root/$arch"
out="${PI_OUT:-$root/results}/$arch"
[ -x "$dir/usr/bin/python3" ] || { echo "no chroot at $dir: run bench/pi_emulated.sh build $arch" >&2; exit 2; }
mkdir -p "$out"
export QEMU_CPU="${PI_CPU:-max}"      # arm64: dotprod (Pi 5 has it), so the sdot paths run
host_py="${PYTHON:-python3}"

# the package as a Pi user gets it: the clone's tracked files (no caches, no build outputs)
rm -rf "$dir/root/edgelstm" && mkdir -p "$dir/root/edgelstm"
(cd "$here" && git ls-files -z | xargs -0 tar -cf - 2>/dev/null) | tar -xf - -C "$dir/root/edgelstm"
# the host's pip settings (a certificate bundle, an index mirror) reach the registry from the chroot too
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$dir/etc/pip.conf"
[ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
cp /etc/resolv.conf "$dir/etc/resolv.conf" 2>/dev/null || true
for m in proc sys dev; do mountpoint -q "$dir/$m" || mount --rbind "/$m" "$dir/$m"; done
trap 'for m in proc sys dev; do umount -R "$dir/$m" 2>/dev/null || true; done' EXIT
in_pi() { chroot "$dir" /usr/bin/env -i HOME=/root PATH=/root/env/bin:/usr/bin:/bin LANG=C.UTF-8 \
          QEMU_CPU="$QEMU_CPU" "$@"; }

echo "== $arch: $(in_pi uname -m), $(in_pi python3 -c 'import platform,struct;print(platform.python_version(), 8*struct.calcsize("P"), "bit")')"
echo "== install (README, Raspberry Pi)"
t0=$(date +%s)
in_pi bash -c 'cd /root/edgelstm && { [ -x /root/env/bin/pip ] || python3 -m venv --system-site-packages /root/env; } &&
               /root/env/bin/pip install -q -e .' 2>&1 | tail -5
echo "install: $(( $(date +%s) - t0 )) s; $(in_pi python3 -c 'import importlib.util as u; print("numba", "present" if u.find_spec("numba") else "absent")' 2>/dev/null || in_pi /root/env/bin/python -c 'import importlib.util as u; print("numba", "present" if u.find_spec("numba") else "absent")')"

echo "== first run, cold caches (x86 host then $arch, the same hour)"
# fresh NUMBA_CACHE_DIR and XDG_CACHE_HOME: first the JIT forced (the compile a first run used to wait for), then
# the first-ever run (the C runtime, built if missing, while a background warmup compiles), then a run once that
# warmup is done (the in-tree caches would be cold anyway)
cold() { "$@" bash -c 'export NUMBA_CACHE_DIR=$(mktemp -d) XDG_CACHE_HOME=$(mktemp -d);
        TIMEFORMAT="wall %1R s, cpu %1U s user + %1S s sys"; printf "JIT forced: ";
        { time NUMBA_CACHE_DIR=$(mktemp -d) EDGELSTM_BACKEND=jit ${TAG:-edgelstm tag} --json > /dev/null 2>&1; } 2>&1
        printf "; first run: "; { time ${TAG:-edgelstm tag} --json > /tmp/tag.json 2>/dev/null; } 2>&1
        for i in $(seq 3600); do ls "$XDG_CACHE_HOME"/edgelstm/warmup-*.started >/dev/null 2>&1 || break
                                  grep -qs "ready (jit" "$XDG_CACHE_HOME/edgelstm/warmup.log" && break; sleep 1; done
        printf "; after the background warmup: "; { time ${TAG:-edgelstm tag} --json > /dev/null 2>&1; } 2>&1'; }
echo "x86:   $(cold env PATH="$(dirname "$(command -v edgelstm)"):$PATH")"
echo "$arch: $(cold in_pi)"
in_pi cat /tmp/tag.json > "$out/tag.json"
edgelstm tag --json > "$out/tag_x86.json"
if diff <(grep '"event"' "$out/tag_x86.json") <(grep '"event"' "$out/tag.json") >/dev/null; then
  echo "edgelstm tag: events identical to x86 ($(grep -c '"event"' "$out/tag.json") events)"
else echo "edgelstm tag: EVENTS DIFFER"; diff <(grep '"event"' "$out/tag_x86.json") <(grep '"event"' "$out/tag.json") || true; fi

if [ -n "${PI_BEFORE:-}" ]; then   # an older checkout (e.g. git archive of the base commit): its first run, same hour
  rm -rf "$dir/root/before" && mkdir -p "$dir/root/before" && cp -a "$PI_BEFORE/." "$dir/root/before/"
  # python -S: the editable install's import hook (a .pth file) would win over PYTHONPATH; the site directories
  # (numpy, numba) go on PYTHONPATH instead
  sites='import sys; print(":".join(p for p in sys.path if p.endswith(("site-packages", "dist-packages"))))'
  before="import sys, edgelstm; assert edgelstm.__file__.startswith(sys.argv[1]), edgelstm.__file__"
  host_sites=$("$host_py" -c "$sites"); pi_sites=$(in_pi python3 -c "$sites")
  PYTHONPATH="$PI_BEFORE:$host_sites" "$host_py" -S -c "$before" "$PI_BEFORE" && in_pi env PYTHONPATH="/root/before:$pi_sites" python3 -S -c "$before" /root/before
  echo "before, x86:   $(cold env PYTHONPATH="$PI_BEFORE:$host_sites" TAG="$host_py -S -m edgelstm tag")"
  echo "before, $arch: $(cold in_pi env PYTHONPATH="/root/before:$pi_sites" TAG="python3 -S -m edgelstm tag")"
fi

echo "== bit-exact outputs against x86"
int8=--int8-only; [ -n "${PI_FULL:-}" ] && int8=""   # PI_FULL=1: the float models too (JIT only; slow emulated)
has_numba=""; in_pi python3 -c 'import importlib.util as u, sys; sys.exit(0 if u.find_spec("numba") else 1)' 2>/dev/null && has_numba=1
[ -z "$has_numba" ] && int8=--int8-only
"$host_py" "$here/bench/pi_compare.py" save "$out/x86.npz" $int8 2>/dev/null
if [ -n "$has_numba" ]; then
  # a Pi 5 (Cortex-A76, dotprod): qemu-user does not show the emulated CPU in /proc/cpuinfo, so LLVM is told
  sdot_env="NUMBA_CPU_NAME=cortex-a76 NUMBA_CPU_FEATURES=+neon,+dotprod,+fp-armv8,+crc,+lse,+rdm"
  echo "-- JIT, $sdot_env"
  in_pi env $sdot_env python3 /root/edgelstm/bench/pi_sdot_check.py /tmp/dot_sdot.s
  in_pi cat /tmp/dot_sdot.s > "$out/dot_blocks_sdot.s" || true
  in_pi env $sdot_env python3 /root/edgelstm/bench/pi_compare.py save /tmp/pi.npz $int8 2>/dev/null && in_pi cat /tmp/pi.npz > "$out/pi_sdot.npz"
  "$host_py" "$here/bench/pi_compare.py" compare "$out/x86.npz" "$out/pi_sdot.npz" || true
  if [ -n "${PI_FULL:-}" ]; then
    echo "-- JIT, the CPU qemu reports (the generic smlal path of a Pi 3 / 4)"
    in_pi python3 /root/edgelstm/bench/pi_compare.py save /tmp/pi.npz $int8 2>/dev/null && in_pi cat /tmp/pi.npz > "$out/pi.npz"
    "$host_py" "$here/bench/pi_compare.py" compare "$out/x86.npz" "$out/pi.npz" || true
  fi
  echo "-- native C backend (build-native), int8 models"
  in_pi bash -c 'cd /root && python3 -m edgelstm.firmware_host build-native'
  in_pi env EDGELSTM_BACKEND=native python3 /root/edgelstm/bench/pi_compare.py save /tmp/native.npz --int8-only 2>/dev/null && in_pi cat /tmp/native.npz > "$out/native.npz"
  "$host_py" "$here/bench/pi_compare.py" compare "$out/x86.npz" "$out/native.npz" || true
else
  echo "-- no Numba: the C runtime built on first use"
  in_pi python3 /root/edgelstm/bench/pi_compare.py save /tmp/pi.npz --int8-only 2>/dev/null && in_pi cat /tmp/pi.npz > "$out/pi.npz"
  "$host_py" "$here/bench/pi_compare.py" compare "$out/x86.npz" "$out/pi.npz" || true
  in_pi python3 -c "from edgelstm.backends import native; print('dot path (built on first use):', native.library().elstm_dot_path().decode())"
  echo "-- the NEON (vmlal_s16) dot loop of a Pi 2 or later: build-native --cflag=-mfpu=neon"
  in_pi bash -c 'cd /root && python3 -m edgelstm.firmware_host build-native --cflag=-mfpu=neon'
  in_pi python3 /root/edgelstm/bench/pi_compare.py save /tmp/neon.npz --int8-only 2>/dev/null && in_pi cat /tmp/neon.npz > "$out/neon.npz"
  "$host_py" "$here/bench/pi_compare.py" compare "$out/x86.npz" "$out/neon.npz" || true
  in_pi bash -c 'cd /root && python3 -m edgelstm.firmware_host build-native >/dev/null'   # back to the default build
fi

#!/usr/bin/env bash
# Prepare the aarch64 environment of the slow test tests/arm64/test_arm64.py (staff only):
#   - on the host: debootstrap, qemu-user-static, binfmt-support and the cross compiler
#     gcc-aarch64-linux-gnu (apt-get, only those missing);
#   - qemu-aarch64 registered with binfmt_misc, so that arm64 programs run as any other
#     (the kernels' tests start Python subprocesses: sys.executable must run by itself);
#   - an arm64 Debian bookworm (minbase) in $KIT_ARM64_ROOT/sysroot with python3,
#     python3-dev (the headers the cross compiler builds against) and libgomp1 (OpenMP);
#   - numpy>=2, Cython>=3, setuptools, pytest, hypothesis, scipy and pyyaml (what
#     tests/conftest.py imports), as manylinux aarch64 wheels that the host's pip puts
#     into the sysroot's /usr/local/lib/python3.X/dist-packages.
# Idempotent: a step already done is said and skipped. Needs root (apt-get, debootstrap,
# binfmt_misc). KIT_ARM64_ROOT: the cache folder (default $HOME/.cache/kit-arm64).
# Then: python -m pytest -m slow tests/arm64 -q
set -euo pipefail

ROOT="${KIT_ARM64_ROOT:-$HOME/.cache/kit-arm64}"
SYSROOT="$ROOT/sysroot"
MIRROR="${KIT_ARM64_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
DEBS="python3,python3-venv,python3-dev,libpython3-dev,libgomp1"
WHEELS=("numpy>=2" "Cython>=3" "setuptools>=64" "pytest>=7" "hypothesis>=6" "scipy>=1.10" "pyyaml>=6")
HOST_PYTHON="${KIT_HOST_PYTHON:-python3}"

step() { printf 'arm64: %s\n' "$*"; }
fail() { printf 'arm64: FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "run as root (apt-get, debootstrap and binfmt_misc need it)"
[ "$(uname -m)" = x86_64 ] || fail "meant for an x86_64 host (this one is $(uname -m))"
mkdir -p "$ROOT"
rm -f "$ROOT/ready"

# 1. Host packages.
missing=()
for pkg in debootstrap qemu-user-static binfmt-support gcc-aarch64-linux-gnu; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
    step "host packages: already installed (debootstrap qemu-user-static binfmt-support gcc-aarch64-linux-gnu)"
else
    step "host packages: apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# 2. binfmt_misc: arm64 binaries run through qemu-aarch64-static (flag F: also in a chroot).
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    step "binfmt_misc: mount -t binfmt_misc none /proc/sys/fs/binfmt_misc"
    mount -t binfmt_misc none /proc/sys/fs/binfmt_misc \
        || fail "cannot mount binfmt_misc (a container without that privilege?): arm64 programs cannot run here"
fi
if grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
    step "binfmt_misc: qemu-aarch64 already registered"
else
    step "binfmt_misc: update-binfmts --enable qemu-aarch64"
    update-binfmts --enable qemu-aarch64 || fail "update-binfmts --enable qemu-aarch64 failed"
    grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 || fail "qemu-aarch64 is not enabled in binfmt_misc"
fi

# 3. The arm64 sysroot (debootstrap runs its second stage through binfmt_misc by itself).
if [ -e "$ROOT/sysroot.done" ] && [ -x "$SYSROOT/usr/bin/python3" ]; then
    step "sysroot: already bootstrapped in $SYSROOT"
else
    step "sysroot: debootstrap --arch=arm64 --variant=minbase --include=$DEBS $SUITE $SYSROOT $MIRROR (3 minutes)"
    rm -rf "$SYSROOT" "$ROOT/sysroot.done"
    debootstrap --arch=arm64 --variant=minbase --include="$DEBS" "$SUITE" "$SYSROOT" "$MIRROR" \
        > "$ROOT/debootstrap.log" 2>&1 || fail "debootstrap failed: see $ROOT/debootstrap.log"
    touch "$ROOT/sysroot.done"
fi
absent=()
for pkg in ${DEBS//,/ }; do
    chroot "$SYSROOT" dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || absent+=("$pkg")
done
if [ ${#absent[@]} -eq 0 ]; then
    step "sysroot: has ${DEBS//,/ }"
else
    step "sysroot: apt-get install ${absent[*]} (in the chroot, under emulation)"
    chroot "$SYSROOT" apt-get update -qq
    chroot "$SYSROOT" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${absent[@]}" >/dev/null
fi

# 4. The arm64 Python's packages: aarch64 wheels fetched by the host's pip.
PYVER="$(basename "$(readlink -f "$SYSROOT/usr/bin/python3")")"   # python3.11
PYVER="${PYVER#python}"
SITE="$SYSROOT/usr/local/lib/python$PYVER/dist-packages"
arm_python() { QEMU_LD_PREFIX="$SYSROOT" "$SYSROOT/usr/bin/python3" "$@"; }
CHECK='import numpy, scipy.signal, Cython, setuptools, pytest, hypothesis, yaml
assert int(numpy.__version__.split(".")[0]) >= 2 and int(Cython.__version__.split(".")[0]) >= 3'
if arm_python -c "$CHECK" 2>/dev/null; then
    step "python $PYVER (arm64): numpy, scipy, Cython, setuptools, pytest, hypothesis, pyyaml already in $SITE"
else
    "$HOST_PYTHON" -m pip --version >/dev/null 2>&1 || fail "the host's $HOST_PYTHON has no pip (set KIT_HOST_PYTHON)"
    step "python $PYVER (arm64): pip install --target $SITE --platform manylinux2014_aarch64 ${WHEELS[*]}"
    mkdir -p "$SITE"
    "$HOST_PYTHON" -m pip install -q --disable-pip-version-check --root-user-action=ignore --upgrade --target "$SITE" \
        --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 --implementation cp \
        --python-version "$PYVER" --abi "cp${PYVER/./}" --only-binary=:all: "${WHEELS[@]}"
    arm_python -c "$CHECK" || fail "the arm64 Python cannot import its packages"
fi

# 5. Check: the arm64 Python runs by itself (binfmt_misc) and the cross compiler links for it.
step "check: $(QEMU_LD_PREFIX="$SYSROOT" "$SYSROOT/usr/bin/python3" -c \
    'import platform, numpy; print("python", platform.python_version(), platform.machine(), "numpy", numpy.__version__)')"
probe="$(mktemp -d)"
trap 'rm -rf "$probe"' EXIT
printf '#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n' > "$probe/p.c"
aarch64-linux-gnu-gcc --sysroot="$SYSROOT" -O3 -ffp-contract=off -fopenmp "$probe/p.c" -o "$probe/p" \
    || fail "aarch64-linux-gnu-gcc cannot build for the sysroot"
QEMU_LD_PREFIX="$SYSROOT" "$probe/p" || fail "an aarch64 program built with OpenMP does not run"
step "check: aarch64-linux-gnu-gcc --sysroot builds with OpenMP, and the program runs"
printf 'sysroot=%s\npython=%s\n' "$SYSROOT" "$PYVER" > "$ROOT/ready"
step "ready: $ROOT (now: python -m pytest -m slow tests/arm64 -q)"

# Common definitions for the series scripts.  Source it, do not run it.
# shellcheck shell=bash

set -euo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../base.pin
. "$TOP/base.pin"
# shellcheck source=../series.conf
. "$TOP/series.conf"

QEMU_DIR=$TOP/qemu
BUILD_DIR=$QEMU_DIR/build
PATCH_DIR=$TOP/patches
FIXUP_DIR=$TOP/build-fixups
BASELINE_DIR=$TOP/baseline/qemu
BASELINE_BUILD=$BASELINE_DIR/build

# Caches live outside the repo so that a fresh clone reuses them.
CACHE_DIR=${QEMU_SERIES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qemu-series}
TARBALL_PATH=$CACHE_DIR/$TARBALL
export CCACHE_DIR=${CCACHE_DIR:-$CACHE_DIR/ccache}
# Relative paths in the compiler command line let the series tree and
# the baseline tree share cache entries.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$TOP}
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-5G}
# Builds are compiled with -g, for which ccache hashes the working
# directory; the trees live in different directories, so do not.
export CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-true}
# QEMU's configure names the compiler, so meson does not add ccache by
# itself: put Debian's ccache masquerade directory first.
if [ -d /usr/lib/ccache ]; then
    export PATH=/usr/lib/ccache:$PATH
fi

# Deterministic git behaviour whatever the developer's configuration.
GIT_EXPORT_OPTS=(-c core.abbrev=10 -c diff.algorithm=myers
                 -c diff.noprefix=false -c diff.mnemonicPrefix=false
                 -c diff.relative=false -c diff.renames=true
                 -c format.signature= -c format.coverLetter=false
                 -c format.numbered=false)

# Binaries and test programs `make` builds in a tree (the tools are what
# upstream's iotests run besides qemu-system-x86_64).
BUILD_TARGETS=(qemu-system-x86_64 qemu-img qemu-io qemu-nbd
               storage-daemon/qemu-storage-daemon
               tests/qtest/migration-test tests/qtest/device-introspect-test
               tests/qtest/qmp-cmd-test tests/qtest/test-hmp
               tests/unit/test-qobject-input-visitor
               tests/unit/test-qobject-output-visitor
               tests/unit/test-clone-visitor tests/unit/test-keyval
               tests/unit/test-visitor-serialization
               tests/unit/test-string-input-visitor
               tests/unit/test-string-output-visitor
               tests/unit/test-forward-visitor
               tests/unit/test-qmp-cmds
               tests/unit/test-qdev-global-props
               tests/unit/test-dealloc-present-visitor
               tests/unit/test-qapi-merge
               tests/unit/test-bql-scope)

msg() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() { msg "error: $*"; exit 1; }

# git in the series tree, with the project identity.
qgit() {
    git -C "$QEMU_DIR" -c user.name="$SERIES_NAME" \
        -c user.email="$SERIES_EMAIL" "$@"
}

# Names of the patch files of the series, in order.
series_patches() {
    [ -f "$PATCH_DIR/series" ] || return 0
    grep -v -e '^#' -e '^[[:space:]]*$' "$PATCH_DIR/series" || true
}

# Run a command with /dev/kvm hidden, so that tests use TCG whatever the
# machine has (see ../shared/design/build.md for why).  Needs root and
# unshare; without them the command runs as it is, with QEMU_SERIES_ACCEL
# telling the tests to ask for TCG.
without_kvm() {
    if [ -e /dev/kvm ] && [ "$(id -u)" = 0 ] && command -v unshare >/dev/null &&
       unshare -m true 2>/dev/null; then
        unshare -m -- sh -c 'mount --bind /dev/null /dev/kvm && exec "$@"' sh "$@"
    else
        "$@"
    fi
}

# A binary run from a build dir looks for its data under qemu-bundle/:
# link Debian's SeaBIOS and iPXE ROMs and the built x86 option ROMs
# there (the repack has no blobs, and they are not installed).
link_firmware() {
    local build=$1 datadir f
    datadir=$build/qemu-bundle/usr/local/share/qemu
    make -C "$build" -j "$(nproc)" --no-print-directory pc-bios/optionrom/all \
        >"$build/.series-roms.log" 2>&1 ||
        die "building the option ROMs failed (see $build/.series-roms.log)"
    mkdir -p "$datadir"
    for f in /usr/share/seabios/*.bin /usr/lib/ipxe/qemu/*.rom "$build"/pc-bios/optionrom/*.bin; do
        [ -e "$f" ] || continue
        ln -sfn "$f" "$datadir/${f##*/}"
    done
    for f in bios-256k.bin vgabios-stdvga.bin efi-e1000e.rom linuxboot_dma.bin kvmvapic.bin; do
        [ -e "$datadir/$f" ] || die "firmware $f missing from $datadir"
    done
}

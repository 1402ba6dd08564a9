#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The documentation build, as upstream's CI does it, as TAP: a build
# directory of its own (SRCDIR/build-docs, kept out of git status),
# configured with the project's options but --enable-docs and
# --enable-werror (docs/meson.build then runs Sphinx with -W and
# -Dkerneldoc_werror=1), building only the manual (ninja html, upstream's
# sphinxdocs target; the man pages come from the same sources and would
# take as long again).
#
# Usage: docs.sh [SRCDIR]   (default qemu/)
. "$(dirname "$0")/../scripts/lib.sh"
set +e

src=${1:-$QEMU_DIR}
build=$src/build-docs
opts="${CONFIGURE_OPTS/--disable-docs/} --enable-docs --enable-werror"
opts=$(echo "$opts" | tr -s ' ')

n=0 failed=0
ok() {  # ok STATUS NAME [LOG]
    n=$((n + 1))
    if [ "$1" = 0 ]; then
        echo "ok $n - $2"
    else
        echo "not ok $n - $2"; failed=$((failed + 1))
        [ -z "${3:-}" ] || grep -v '^\[[0-9]*/[0-9]*\] ' "$3" | tail -n 40 | sed 's/^/# /'
    fi
}

if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
    exclude=$(git -C "$src" rev-parse --git-path info/exclude)
    case $exclude in /*) ;; *) exclude=$src/$exclude ;; esac
    mkdir -p "${exclude%/*}"
    grep -qx '/build-docs/' "$exclude" 2>/dev/null || echo '/build-docs/' >>"$exclude"
fi

stamp=$build/.series-configure-opts
if [ ! -f "$build/build.ninja" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$opts" ]; then
    rm -rf "$build"
    mkdir -p "$build"
    start=$SECONDS
    # shellcheck disable=SC2086
    (cd "$build" && ../configure $opts >configure.out 2>&1)
    st=$?
    [ $st = 0 ] && echo "$opts" >"$stamp"
    ok $st "configure ${build#"$TOP"/} ($opts)" "$build/configure.out"
    echo "# configure: $((SECONDS - start)) s"
    [ $st = 0 ] || { echo "1..$n"; exit 1; }
fi

start=$SECONDS
log=$build/.series-html.log
ninja -C "$build" html >"$log" 2>&1
ok $? "docs: ninja html (Sphinx -W)" "$log"
echo "# ninja html: $((SECONDS - start)) s"
echo "1..$n"
[ $failed = 0 ]

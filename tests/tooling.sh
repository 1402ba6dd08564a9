#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Tests of the patch-queue scripts, as TAP, in a scratch copy of the
# project (its qemu/ a clone sharing the real one's objects): status,
# export determinism, and that setup-tree never throws away unexported
# work.
. "$(dirname "$0")/../scripts/lib.sh"
set +e

n=0 failed=0
ok() {  # ok STATUS NAME [DIAG-FILE]
    n=$((n + 1))
    if [ "$1" = 0 ]; then
        echo "ok $n - $2"
    else
        echo "not ok $n - $2"; failed=$((failed + 1))
        [ -z "${3:-}" ] || sed 's/^/# /' "$3" | head -n 30
    fi
}
expect() {  # expect WANTED-STATUS PATTERN NAME -- CMD...
    local want=$1 pat=$2 name=$3; shift 4
    "$@" >"$log" 2>&1
    local st=$?
    [ $st = "$want" ] && { [ -z "$pat" ] || grep -q -- "$pat" "$log"; }
    local r=$?
    [ $r = 0 ] || echo "(exit status $st, wanted $want; wanted output matching '$pat')" >>"$log"
    ok $r "$name" "$log"
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tooling.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
log=$tmp/log
T=$tmp/proj
mkdir -p "$T"
cp -r "$TOP/scripts" "$TOP/base.pin" "$TOP/series.conf" "$TOP/cover-letter.txt" \
      "$TOP/patches" "$TOP/build-fixups" "$T/"
git clone -q --shared "$QEMU_DIR" "$T/qemu" >"$log" 2>&1
ok $? "scratch project with a clone of qemu/" "$log"
tg() { git -C "$T/qemu" -c user.name="$SERIES_NAME" -c user.email="$SERIES_EMAIL" "$@"; }
# The series as it is; the test adds a patch after it.
n0=$(series_patches | wc -l)
n1=$((n0 + 1))
newpatch=$(printf '%04d' $n1)-docs-Add-a-file-for-the-tooling-test.patch
badpatch=$(printf '%04d' $n1)-bad-Patch.patch
sum() { (cd "$T/patches" && sha256sum ./* | sha256sum); }

expect 0 "in sync" "series-status: in sync after a fresh apply" -- "$T/scripts/series-status"
expect 0 "" "setup-tree: nothing to do when in sync" -- "$T/scripts/setup-tree"

echo "tooling test" > "$T/qemu/docs/series-tooling-test.txt"
tg add docs/series-tooling-test.txt
tg commit -q -m "docs: Add a file for the tooling test" \
    -m "This commit exists only inside the tooling test." \
    -m "Signed-off-by: $SERIES_NAME <$SERIES_EMAIL>"
new=$(tg rev-parse HEAD)
expect 1 "out of sync" "series-status: exit 1 with an unexported commit" -- "$T/scripts/series-status"
expect 1 "not in patches/" "setup-tree refuses to drop an unexported commit" -- "$T/scripts/setup-tree"
[ "$(tg rev-parse HEAD)" = "$new" ]
ok $? "setup-tree left the unexported commit in place"

expect 0 "exported $n1 patches" "export writes the new commit" -- "$T/scripts/export"
grep -qx "$newpatch" "$T/patches/series" &&
    grep -q "^Subject: \[PATCH 0/$n1\] " "$T/patches/0000-cover-letter.patch" &&
    grep -q '^From 0000000000000000000000000000000000000000 ' "$T/patches/$newpatch" &&
    grep -Eq '^index [0-9a-f]{10}\.\.[0-9a-f]{10}$' "$T/patches/$newpatch"
ok $? "export: series file, cover letter, zero commit, 10-hex index lines"
before=$(sum)
expect 0 "0 files changed" "export again: no file rewritten" -- "$T/scripts/export"
[ "$(sum)" = "$before" ]
ok $? "export again: byte-identical patches/"
expect 0 "in sync" "series-status: in sync after export" -- "$T/scripts/series-status"

# Someone else's patches/ arrives (the patch dropped): qemu/ holds nothing
# new, so setup-tree may re-apply.
grep -vx "$newpatch" "$T/patches/series" > "$T/series.new"
mv "$T/series.new" "$T/patches/series"
rm "$T/patches/$newpatch"
expect 0 "re-applying" "setup-tree re-applies a changed patches/ when nothing is lost" -- "$T/scripts/setup-tree"
[ "$(tg rev-list --count base..HEAD)" = "$n0" ] &&
    [ "$(tg rev-parse refs/series/previous)" = "$new" ]
ok $? "setup-tree: HEAD is the series again, the old HEAD kept in refs/series/previous"

# A patch that does not apply is named.
printf 'From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\nFrom: x <x@example.org>\nSubject: [PATCH] bad: Patch\n\nSigned-off-by: x <x@example.org>\n---\n--- a/nonexistent\n+++ b/nonexistent\n@@ -1 +1 @@\n-a\n+b\n' \
    > "$T/patches/$badpatch"
echo "$badpatch" >> "$T/patches/series"
expect 1 "patch $badpatch does not apply" "setup-tree names the patch that does not apply" -- "$T/scripts/setup-tree"
expect 1 "does not apply" "series-status: exit 1 when a patch does not apply" -- "$T/scripts/series-status"

# Uncommitted changes block a re-apply.
tg reset -q --hard "$new"
tg update-ref refs/series/synced HEAD
rm "$T/patches/$badpatch"; printf '# x\n' > "$T/patches/series"
echo "# local edit" >> "$T/qemu/README.rst"
echo "0" > "$T/qemu/.git/series-applied"
expect 1 "uncommitted changes" "setup-tree refuses to re-apply over uncommitted changes" -- "$T/scripts/setup-tree"

echo "1..$n"
[ $failed = 0 ]

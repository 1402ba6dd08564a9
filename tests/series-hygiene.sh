#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Series hygiene, as TAP: the series applies with git am to a pristine base
# in a scratch tree, exporting that tree gives back patches/ byte for byte,
# every patch passes scripts/checkpatch.pl and the subject and trailer
# conventions, and qemu/ is in sync with patches/.
. "$(dirname "$0")/../scripts/lib.sh"
set +e

n=0 failed=0
ok() {  # ok STATUS NAME [DIAG-FILE]
    n=$((n + 1))
    if [ "$1" = 0 ]; then
        echo "ok $n - $2"
    else
        echo "not ok $n - $2"; failed=$((failed + 1))
        [ -z "${3:-}" ] || sed 's/^/# /' "$3" | head -n 40
    fi
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hygiene.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
log=$tmp/log

# A scratch tree at the pristine base (tagged in qemu/ from the verified
# tarball), sharing qemu/'s objects.
git clone -q --shared --no-checkout "$QEMU_DIR" "$tmp/q" &&
    git -C "$tmp/q" checkout -q --detach base >"$log" 2>&1
ok $? "scratch tree at the pristine base" "$log"
git -C "$tmp/q" config user.name "$SERIES_NAME"
git -C "$tmp/q" config user.email "$SERIES_EMAIL"

patches=$(series_patches)
count=0
for p in $patches; do
    count=$((count + 1))
    git -C "$tmp/q" am -q "$PATCH_DIR/$p" >"$log" 2>&1
    st=$?
    ok $st "git am $p" "$log"
    if [ $st != 0 ]; then
        git -C "$tmp/q" am --abort >/dev/null 2>&1
        break
    fi
done

"$TOP/scripts/export" --from "$tmp/q" --to "$tmp/out" >"$log" 2>&1 &&
    diff -r "$PATCH_DIR" "$tmp/out" >"$log" 2>&1
ok $? "round trip: exporting the applied series gives patches/ unchanged" "$log"

grep -q "^Subject: \[PATCH 0/$count\] " "$PATCH_DIR/0000-cover-letter.patch"
ok $? "cover letter announces $count patches"

for p in $patches; do
    (cd "$tmp/q" && perl scripts/checkpatch.pl --no-color "$PATCH_DIR/$p") >"$log" 2>&1
    st=$?
    ok $st "checkpatch $p" "$log"
    if [ $st = 0 ] && grep -q '^WARNING' "$log"; then
        grep -A3 '^WARNING' "$log" | sed 's/^/# /'
    fi

    f=$PATCH_DIR/$p
    subj=$(sed -n 's/^Subject: \[PATCH\] //p' "$f" | head -n 1)
    [ -n "$subj" ] && [ ${#subj} -le 76 ] && [[ $subj == *:\ * ]]
    ok $? "$p: subject 'subsystem: summary', at most 76 characters ($subj)"

    # The commit message: from the blank line after the headers to '---'.
    msgfile=$tmp/msg
    awk 'body && /^---$/ {exit} body {print} /^$/ && !body {body=1}' "$f" > "$msgfile"
    last=$(grep -v '^[[:space:]]*$' "$msgfile" | tail -n 1)
    [ "$last" = "Signed-off-by: $SERIES_NAME <$SERIES_EMAIL>" ]
    ok $? "$p: Signed-off-by of the project identity is the last line"
    awk 'length > 72 && !/https?:\/\// && !/^[A-Za-z-]+-by: /' "$msgfile" >"$log"
    [ ! -s "$log" ]
    ok $? "$p: commit message wrapped at 72 columns" "$log"
done

"$TOP/scripts/series-status" >"$log" 2>&1
ok $? "qemu/ is in sync with patches/ (scripts/series-status)" "$log"

echo "1..$n"
[ $failed = 0 ]

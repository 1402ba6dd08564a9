#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Ping loss during a local and during a plain migration of one guest.

The guest of tests/guestlib.py (Debian's kernel, a busybox initramfs,
a virtio-net NIC) migrates on one host, in a network namespace of its
own, while the host pings it through its tap every 10 ms
(tests/local_tap_guest.py does the work):

- series, local: the destination takes the source's tap fd;
- series, plain: the destination opens a second tap of the same
  bridge, and QEMU's self-announce moves the guest's MAC to it;
- stock, plain: the same with stock 10.2.2.

Per variant: pings lost and the longest gap without replies, beside
the downtime and total time QEMU reports (medians and maxima over the
repetitions, variants in rotation).  Nothing asserts a time.

usage: local_tap.py --series BIN --stock BIN [--reps N] [--out FILE.md]
"""

import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'tests'))
import benchlib as bl           # noqa: E402
import guestlib                 # noqa: E402
import local_tap_guest as ltg   # noqa: E402
from qemu_vm import exec_in_netns  # noqa: E402

VARIANTS = [('series', 'local'), ('series', 'plain'), ('stock', 'plain')]


def main():
    ap = bl.arg_parser(5)
    ap.add_argument('--in-netns', action='store_true', help=bl.argparse.SUPPRESS)
    args = ap.parse_args()
    if not args.in_netns:
        if os.geteuid() != 0 or not os.path.exists('/dev/net/tun'):
            bl.die('needs root and /dev/net/tun')
        guestlib.guest_files()
        argv = [os.path.abspath(__file__), '--in-netns',
                '--series', os.path.abspath(args.series),
                '--stock', os.path.abspath(args.stock),
                '--reps', str(args.reps)]
        if args.out:
            argv += ['--out', os.path.abspath(args.out)]
        exec_in_netns(argv)
    bl.exit_on_sigterm()
    # tests/qemu_vm.py starts every QEMU with -accel tcg
    acc = 'tcg'
    kernel, initrd = guestlib.guest_files()
    guest_args = guestlib.guest_args(kernel, initrd)
    ltg.sh('ip link set lo up; ip link add br0 type bridge; '
           'ip link set br0 type bridge forward_delay 0; '
           'ip addr add 10.0.0.1/24 dev br0; ip link set br0 up; '
           'for t in tap0 tap1; do ip tuntap add dev $t mode tap; '
           'ip link set $t master br0; ip link set $t up; done')
    bins = {'series': args.series, 'stock': args.stock}
    res = {v: [] for v in VARIANTS}
    tmp = tempfile.mkdtemp(prefix='bench-local-tap-')
    for rep in range(args.reps):
        order = VARIANTS[rep % 3:] + VARIANTS[:rep % 3]
        for binary, mode in order:
            try:
                res[(binary, mode)].append(
                    ltg.run(bins[binary], mode, tmp, guest_args))
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                print('%s %s: %r' % (binary, mode, e), file=sys.stderr)

    def col(rs, key):
        vals = [r[key] for r in rs if r.get(key) is not None]
        if not vals:
            return '-', '-'
        return bl.fmt3(bl.median(vals)), bl.fmt3(max(vals))

    lines = ['## Ping loss during local and plain migration', '',
             bl.machine_facts(acc), '',
             bl.binaries_line(args.stock, args.series), '',
             'Guest: Debian\'s %s with a busybox initramfs, 256 MiB, '
             'virtio-net; ping every 10 ms through the tap; %d '
             'repetitions of each variant, in rotation.'
             % (guestlib.kernel_package(), args.reps), '',
             '| binary | migration | runs | pings lost, median | max | '
             'longest gap ms, median | max | downtime ms, median | max | '
             'total ms, median |',
             '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|']
    for v in VARIANTS:
        rs = res[v]
        lost = col(rs, 'lost')
        gap = col(rs, 'gap_ms')
        down = col(rs, 'downtime_ms')
        total = col(rs, 'total_ms')
        lines.append('| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s |'
                     % (v[0], v[1], len(rs), lost[0], lost[1], gap[0],
                        gap[1], down[0], down[1], total[0]))
    lines += ['', 'A ping is lost when its reply never comes; in a local '
              'migration the packets that arrive during the downtime wait '
              'in the tap device and are answered late.']
    bl.write_report('\n'.join(lines) + '\n', args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())

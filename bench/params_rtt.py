#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Round-trip time of migrate-set-parameters and query-migrate-parameters.

One idle QEMU per binary (`-M q35 -m 256M -S -nodefaults`, no
migration), both started at once.  The client sends, one command in
flight, migrate-set-parameters alternating between two values of
max-bandwidth and downtime-limit (both parameters in every command)
and query-migrate-parameters, in turn; it runs batches of commands on
each QEMU in alternation (the order rotating), so that both binaries
see the same conditions.  The commands are encoded once: the time is
QEMU's, plus the socket round trip.

The report gives, per binary and command, the number of calls, p50,
p90, p99 and max, the p50 of every batch as median (min-max), and the
ratios series/stock of p50 and p99.  Nothing asserts a time: the
figures describe this machine.

usage: params_rtt.py --series BIN --stock BIN [--calls N] [--batch N]
                     [--out FILE.md]
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl           # noqa: E402

SETS = [bl.encode('migrate-set-parameters',
                  {'max-bandwidth': 1 << 30, 'downtime-limit': 300}),
        bl.encode('migrate-set-parameters',
                  {'max-bandwidth': 2 << 30, 'downtime-limit': 500})]
QUERY = bl.encode('query-migrate-parameters')
COMMANDS = ('set', 'query')


def batch(mon, n, out, per_batch):
    """n calls of each command on a monitor; RTTs (s) appended to out."""
    clock = time.perf_counter
    times = {what: [] for what in COMMANDS}
    for i in range(n):
        for what, data in (('set', SETS[i % 2]), ('query', QUERY)):
            t = clock()
            line = mon.raw(data)
            rtt = clock() - t
            if not line.startswith(b'{"return"'):
                raise RuntimeError('%s: %r' % (what, line))
            times[what].append(rtt)
    for what in COMMANDS:
        out[what] += times[what]
        per_batch[what].append(bl.percentile(times[what], 50))


def check(mon):
    """The two set commands really change the values."""
    for i, want in enumerate(((1 << 30, 300), (2 << 30, 500))):
        mon.raw(SETS[i])
        p = mon.cmd('query-migrate-parameters')
        if (p['max-bandwidth'], p['downtime-limit']) != want:
            raise RuntimeError('parameters not set: %r' % p)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument('--series', required=True)
    ap.add_argument('--stock', required=True)
    ap.add_argument('--calls', type=int, default=3000,
                    help='calls of each command per binary')
    ap.add_argument('--batch', type=int, default=100,
                    help='calls of each command in one batch')
    ap.add_argument('--out', help='markdown report')
    args = ap.parse_args()
    if args.calls < 1 or args.batch < 1:
        bl.die('--calls and --batch must be positive')
    bl.exit_on_sigterm()

    acc = bl.accel()
    names = ('stock', 'series')
    rtts = {n: {w: [] for w in COMMANDS} for n in names}
    per_batch = {n: {w: [] for w in COMMANDS} for n in names}
    start = time.monotonic()
    tmpdir = tempfile.mkdtemp(prefix='bench-params-')
    qemus = {}
    try:
        for name, binary in (('stock', args.stock),
                             ('series', args.series)):
            qemus[name] = bl.Qemu(binary, ['-M', 'q35', '-m', '256M', '-S'],
                                  tmpdir, name, acc)
            qemus[name].start()
            check(qemus[name].mon)
            batch(qemus[name].mon, 50, {w: [] for w in COMMANDS},
                  {w: [] for w in COMMANDS})           # warm up
        done, k = 0, 0
        while done < args.calls:
            n = min(args.batch, args.calls - done)
            order = names if k % 2 == 0 else names[::-1]
            for name in order:
                batch(qemus[name].mon, n, rtts[name], per_batch[name])
            done += n
            k += 1
    finally:
        try:
            bl.stop_all(list(qemus.values()))
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
    elapsed = time.monotonic() - start

    def us(v):
        return bl.fmt3(v * 1e6)

    lines = [
        '## Round trips of migrate-set-parameters and '
        'query-migrate-parameters',
        '',
        bl.machine_facts(acc),
        '',
        bl.binaries_line(args.stock, args.series),
        '',
        'Setup: one idle `-M q35 -m 256M -S -nodefaults` QEMU per '
        'binary, no migration; one command in flight.  `set`: '
        '`migrate-set-parameters` of max-bandwidth and downtime-limit, '
        'alternating between (1 GiB/s, 300 ms) and (2 GiB/s, 500 ms); '
        '`query`: `query-migrate-parameters`; the two in turn.  Batches '
        'of %d calls of each, stock and series alternating; %d calls '
        'of each command per binary after 50 of warm-up; %.0f s in all.'
        % (args.batch, args.calls, elapsed),
        '',
        'Times in microseconds.  "batch p50": the p50 of each batch, '
        'median (min-max) over the batches.',
        '',
        '| command | binary | calls | p50 | p90 | p99 | max | '
        'batch p50 |',
        '|---|---|---:|---:|---:|---:|---:|---:|',
    ]
    for what in COMMANDS:
        for name in names:
            v = rtts[name][what]
            lines.append('| %s | %s | %d | %s | %s | %s | %s | %s |' % (
                what, name, len(v), us(bl.percentile(v, 50)),
                us(bl.percentile(v, 90)), us(bl.percentile(v, 99)),
                us(max(v)),
                bl.spread(per_batch[name][what], us)))
    lines += [
        '',
        'Ratios series/stock (below 1: the series answers faster):',
        '',
        '| command | p50 | p99 | batch p50 (median) |',
        '|---|---:|---:|---:|',
    ]
    for what in COMMANDS:
        s, t = rtts['series'][what], rtts['stock'][what]
        lines.append('| %s | %s | %s | %s |' % (
            what, bl.ratio(bl.percentile(s, 50), bl.percentile(t, 50)),
            bl.ratio(bl.percentile(s, 99), bl.percentile(t, 99)),
            bl.ratio(bl.median(per_batch['series'][what]),
                     bl.median(per_batch['stock'][what]))))
    bl.write_report('\n'.join(lines) + '\n', args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())

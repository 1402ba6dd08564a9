#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Migration cost, series vs stock, beside a loopback limit.

The migration of dst_latency.py (same binary on both sides, `-M q35
-nodefaults -S`, N GiB of RAM, UNIX socket, max-bandwidth 100 GiB/s)
with nobody polling the destination: the source's query-migrate gives
total-time, downtime and ram.transferred (bytes on the wire), from
which the throughput.  RAM variants `zero` (untouched, zero pages) and
`random` (a private mapping of a file of random bytes).

The limit is measured in the same run, once per repetition: the size
of the guest RAM pushed through a UNIX socket by a plain Python copy
loop (a writer process sends 1 MiB buffers, this process reads them).
The report gives the wire throughput as a fraction of that limit; for
`zero` the wire carries only page headers, so its RAM rate (guest RAM
size / total-time) says more.

Stock and series alternate, the order rotating with the repetition;
cells are median (min-max) over the repetitions, then the ratios
series/stock.  Nothing asserts a time: the figures describe this
machine.

usage: migration_cost.py --series BIN --stock BIN [--ram-gib N]
                         [--reps N] [--variants zero,random]
                         [--out FILE.md] [--tmpdir DIR]
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl           # noqa: E402
import miglib                   # noqa: E402

MIB = 1 << 20


def pct(v):
    return '%.1f%%' % (v * 100)


def report(args, acc, stats, loop, elapsed):
    names = ('stock', 'series')
    size, nbytes = bl.ram_size_arg(args.ram_gib)
    loop_rate = bl.median([nbytes / t for t in loop])
    lines = [
        '## Migration cost',
        '',
        bl.machine_facts(acc),
        '',
        bl.binaries_line(args.stock, args.series),
        '',
        'Setup: `-M q35,memory-backend=mem0 -m %s -S -nodefaults`, no '
        'guest code, both sides the same binary; migration over a UNIX '
        'socket, max-bandwidth 100 GiB/s on the source, nobody polling '
        'the destination.  RAM `zero`: memory-backend-ram, never '
        'touched; RAM `random`: the source maps a file of random bytes '
        '(memory-backend-file, share=off).  %d repetitions, stock and '
        'series alternating (order rotated); %.0f s in all.'
        % (size, args.reps, elapsed),
        '',
        'Loopback limit: %s bytes through a UNIX socket by a Python '
        'copy loop (1 MiB buffers, writer and reader processes), once '
        'per repetition: %s MiB/s.' % (
            '{:,}'.format(nbytes),
            bl.spread([nbytes / t / MIB for t in loop], '%.0f')),
        '',
        'Cells: median (min-max) over the repetitions.  total, downtime, '
        'setup: the source\'s query-migrate; wire: `ram.transferred`; '
        'wire rate: wire / total; RAM rate: guest RAM / total; '
        '"of limit": wire rate / median loopback rate.',
        '',
        '| RAM | binary | total s | downtime ms | setup ms | wire MiB '
        '| wire rate MiB/s | of limit | RAM rate MiB/s |',
        '|---|---|---:|---:|---:|---:|---:|---:|---:|',
    ]
    for variant in args.variants:
        for name in names:
            s = stats[variant, name]

            def col(f, fmt=bl.fmt3):
                return bl.spread([f(r) for r in s], fmt)
            lines.append('| %s | %s | %s | %s | %s | %s | %s | %s | %s |'
                         % (variant, name,
                            col(lambda r: r['total']),
                            col(lambda r: r['downtime'] * 1000),
                            col(lambda r: r['setup'] * 1000),
                            col(lambda r: r['transferred'] / MIB),
                            col(lambda r: r['transferred'] / r['total']
                                / MIB),
                            col(lambda r: r['transferred'] / r['total']
                                / loop_rate, pct),
                            col(lambda r: r['ram_total'] / r['total']
                                / MIB)))
    lines += [
        '',
        'Ratios series/stock of the medians (below 1: the series takes '
        'less time; above 1 for a rate: the series is faster):',
        '',
        '| RAM | total | downtime | wire rate |',
        '|---|---:|---:|---:|',
    ]
    for variant in args.variants:
        med = {}
        for n in names:
            s = stats[variant, n]
            med[n] = (bl.median([r['total'] for r in s]),
                      bl.median([r['downtime'] for r in s]),
                      bl.median([r['transferred'] / r['total'] for r in s]))
        lines.append('| %s | %s |' % (variant, ' | '.join(
            bl.ratio(med['series'][i], med['stock'][i])
            for i in range(3))))
    return '\n'.join(lines) + '\n'


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    miglib.add_args(ap, reps=5)
    args = ap.parse_args()
    args.variants = miglib.parse_variants(args.variants)
    nbytes = bl.ram_size_arg(args.ram_gib)[1]
    bl.exit_on_sigterm()

    acc = bl.accel()
    binaries = [('stock', args.stock), ('series', args.series)]
    stats = {(v, n): [] for v in args.variants for n, _ in binaries}
    loop = []
    start = time.monotonic()
    tmpdir = tempfile.mkdtemp(prefix='bench-migcost-', dir=args.tmpdir)
    try:
        ram_file = miglib.prepare(binaries, args.variants, args.ram_gib,
                                  acc, tmpdir)
        miglib.loopback(min(nbytes, 256 * MIB), tmpdir)
        for rep in range(args.reps):
            loop.append(miglib.loopback(nbytes, tmpdir))
            print('rep %d loopback %.0f MiB/s' % (
                rep, nbytes / loop[-1] / MIB), file=sys.stderr, flush=True)
            for variant in args.variants:
                order = binaries[rep % 2:] + binaries[:rep % 2]
                for name, binary in order:
                    res = miglib.migrate_once(binary, variant,
                                              args.ram_gib, acc, tmpdir,
                                              ram_file)
                    stats[variant, name].append(res)
                    print('rep %d %-6s %-6s total %.3f s, downtime %d ms, '
                          '%.0f MiB/s on the wire' % (
                              rep, variant, name, res['total'],
                              res['downtime'] * 1000,
                              res['transferred'] / res['total'] / MIB),
                          file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    bl.write_report(report(args, acc, stats, loop,
                           time.monotonic() - start), args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())

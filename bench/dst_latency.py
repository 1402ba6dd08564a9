#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Destination responsiveness during a precopy load, series vs stock.

A source and a destination QEMU of the same binary (`-M q35 -nodefaults
-S`, no guest code) migrate N GiB of RAM over a UNIX socket, the source
with max-bandwidth 100 GiB/s.  While the destination loads, a client
sends query-status to the destination's QMP monitor in a tight loop
(one command in flight, 120 s allowed per reply) and records the
round-trip time of each, from a short lead-in before `migrate` until
the destination leaves the inmigrate state.  Two RAM variants:

  zero    RAM never touched: every page goes as a zero page
  random  the source's RAM maps a file of random bytes (private
          memory-backend-file), so every page goes in full

Stock and series runs alternate (the order rotates with the
repetition) for each variant.  The report gives, per binary and
variant, the median and spread over the repetitions of: the number of
samples, the RTT p50/p99/max during the migration (and p50 during the
lead-in, idle), and the source's total-time and downtime; then the
ratios series/stock.  Every sample goes to a CSV (binary, variant, rep,
t_s relative to `migrate`, rtt_ms) and the plot to a PNG (pngplot.py).
Nothing asserts a time: the figures describe this machine.

usage: dst_latency.py --series BIN --stock BIN [--ram-gib N] [--reps N]
                      [--variants zero,random] [--out FILE.md]
                      [--csv FILE] [--plot FILE.png | --no-plot]
                      [--tmpdir DIR]
"""

import argparse
import csv
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl           # noqa: E402
import miglib                   # noqa: E402
import pngplot                  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       'results')


def summarize(res):
    during = [rtt * 1000 for t, rtt in res['samples'] if t >= 0]
    idle = [rtt * 1000 for t, rtt in res['samples'] if t < 0]
    return {
        'n': len(during),
        'idle_p50': bl.percentile(idle, 50),
        'p50': bl.percentile(during, 50),
        'p99': bl.percentile(during, 99),
        'max': max(during) if during else float('nan'),
        'total': res['total'],
        'downtime': res['downtime'] * 1000,
        'load_end': res['load_end'],
    }


def report(args, acc, stats, csv_path, png_path, out_dir, elapsed):
    names = ('stock', 'series')
    lines = [
        '## Destination QMP latency during a precopy load',
        '',
        bl.machine_facts(acc),
        '',
        bl.binaries_line(args.stock, args.series),
        '',
        'Setup: `-M q35,memory-backend=mem0 -m %s -S -nodefaults`, no '
        'guest code, both sides the same binary; migration over a UNIX '
        'socket, max-bandwidth 100 GiB/s on the source.  RAM `zero`: '
        'memory-backend-ram, never touched; RAM `random`: the source '
        'maps a file of random bytes (memory-backend-file, share=off).  '
        'A client sends `query-status` to the destination in a tight '
        'loop (one in flight) from %.1f s before `migrate` until the '
        'destination leaves `inmigrate`.  %d repetitions, stock and '
        'series alternating (order rotated); %s in all.'
        % (bl.ram_size_arg(args.ram_gib)[0], args.lead_in, args.reps,
           '%.0f s' % elapsed),
        '',
        'Cells: median (min-max) over the repetitions.  RTT figures are '
        'of the commands sent after `migrate`; "idle p50" is of those '
        'of the lead-in.  total and downtime are the source\'s '
        '`total-time` and `downtime` (the source is paused, so downtime '
        'is QEMU\'s figure for the completion phase).',
        '',
        '| RAM | binary | samples | idle p50 ms | p50 ms | p99 ms | '
        'max ms | total s | downtime ms |',
        '|---|---|---:|---:|---:|---:|---:|---:|---:|',
    ]
    for variant in args.variants:
        for name in names:
            s = stats[variant, name]

            def col(k, fmt=bl.fmt3):
                return bl.spread([r[k] for r in s], fmt)
            lines.append('| %s | %s | %s | %s | %s | %s | %s | %s | %s |'
                         % (variant, name, col('n', '%d'),
                            col('idle_p50'), col('p50'), col('p99'),
                            col('max'), col('total'), col('downtime')))
    lines += [
        '',
        'Ratios series/stock of the medians (below 1: the series is '
        'faster or more responsive):',
        '',
        '| RAM | p50 | p99 | max | total | downtime |',
        '|---|---:|---:|---:|---:|---:|',
    ]
    for variant in args.variants:
        cells = []
        for k in ('p50', 'p99', 'max', 'total', 'downtime'):
            med = [bl.median([r[k] for r in stats[variant, n]])
                   for n in names]
            cells.append(bl.ratio(med[1], med[0]))
        lines.append('| %s | %s |' % (variant, ' | '.join(cells)))
    lines += ['', '<details><summary>Every run</summary>', '',
              '| RAM | binary | rep | samples | p50 ms | p99 ms | max ms '
              '| load end s | total s | downtime ms |',
              '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|']
    for variant in args.variants:
        for name in names:
            for i, r in enumerate(stats[variant, name]):
                lines.append('| %s | %s | %d | %d | %s | %s | %s | %s | '
                             '%s | %s |' % (
                                 variant, name, i, r['n'],
                                 bl.fmt3(r['p50']), bl.fmt3(r['p99']),
                                 bl.fmt3(r['max']), bl.fmt3(r['load_end']),
                                 bl.fmt3(r['total']),
                                 bl.fmt3(r['downtime'])))
    lines += ['', '</details>', '']

    def rel(p):
        return os.path.relpath(p, out_dir)
    lines.append('Samples: `%s` (binary, variant, rep, t_s since '
                 '`migrate`, rtt_ms).' % rel(csv_path))
    if png_path:
        lines += ['', '![destination QMP latency](%s)' % rel(png_path)]
    return '\n'.join(lines) + '\n'


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    miglib.add_args(ap, reps=3)
    ap.add_argument('--lead-in', type=float, default=0.2,
                    help='seconds of sampling before migrate')
    ap.add_argument('--csv', help='samples (default: next to --out, or '
                    'bench/results/dst_latency.csv)')
    ap.add_argument('--plot', help='PNG (default: next to the CSV)')
    ap.add_argument('--no-plot', action='store_true')
    args = ap.parse_args()
    args.variants = miglib.parse_variants(args.variants)
    bl.ram_size_arg(args.ram_gib)
    bl.exit_on_sigterm()

    out_dir = os.path.dirname(os.path.abspath(args.out)) if args.out \
        else RESULTS
    csv_path = args.csv or os.path.join(out_dir, 'dst_latency.csv')
    png_path = None if args.no_plot else (
        args.plot or os.path.splitext(csv_path)[0] + '.png')
    acc = bl.accel()
    binaries = [('stock', args.stock), ('series', args.series)]
    stats = {(v, n): [] for v in args.variants for n, _ in binaries}
    rows = []
    start = time.monotonic()
    tmpdir = tempfile.mkdtemp(prefix='bench-dstlat-', dir=args.tmpdir)
    try:
        ram_file = miglib.prepare(binaries, args.variants, args.ram_gib,
                                  acc, tmpdir, hammer=True)
        for rep in range(args.reps):
            for variant in args.variants:
                order = binaries[rep % 2:] + binaries[:rep % 2]
                for name, binary in order:
                    res = miglib.migrate_once(binary, variant,
                                              args.ram_gib, acc, tmpdir,
                                              ram_file, hammer=True,
                                              lead_in=args.lead_in)
                    s = summarize(res)
                    stats[variant, name].append(s)
                    rows += [(name, variant, rep, '%.6f' % t,
                              '%.4f' % (rtt * 1000))
                             for t, rtt in res['samples']]
                    print('rep %d %-6s %-6s samples %d p50 %s p99 %s '
                          'max %s ms, total %.2f s' % (
                              rep, variant, name, s['n'],
                              bl.fmt3(s['p50']), bl.fmt3(s['p99']),
                              bl.fmt3(s['max']), s['total']),
                          file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    elapsed = time.monotonic() - start

    os.makedirs(os.path.dirname(os.path.abspath(csv_path)), exist_ok=True)
    with open(csv_path, 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(('binary', 'variant', 'rep', 't_s', 'rtt_ms'))
        w.writerows(rows)
    if png_path:
        pngplot.plot(pngplot.panels_from_csv(csv_path), png_path,
                     title_suffix=' (%s GiB, %s)' % (
                         '%g' % args.ram_gib, acc))
    bl.write_report(report(args, acc, stats, csv_path, png_path, out_dir,
                           elapsed), args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())

#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""QMP latency of a destination whose source stalls.

A migration stream of a paused q35 guest (virtio-net NIC, 256 MiB) is
recorded once per binary; the benchmark then plays the source: it
sends a prefix of that stream to a destination started with
-incoming defer + migrate-incoming unix:, and stops sending, the
connection left open.  Stall points: the stream header (4 bytes), the
middle of the RAM, inside the virtio-net section of the device state.
At each point, once the destination has read what it was given, 50
query-status round trips are timed; then SIGTERM, and the time until
the process is gone.  Series and stock run in alternation.

The report gives, per stall point and binary, QMP p50 and max over all
repetitions, the worst time to exit after SIGTERM, and the ratio
series/stock of p50.  Nothing asserts a time (tests/dst_stall.py does
that, with a 100 ms bound).

usage: stall_latency.py --series BIN --stock BIN [--reps N]
                        [--out FILE.md]
"""

import argparse
import os
import signal
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'tests'))
import benchlib as bl           # noqa: E402
import dst_stall as ds          # noqa: E402

SAMPLES = 50


def one(binary, stream, sent):
    """QMP round trips (s) and the seconds to exit after SIGTERM."""
    with ds.stalled_dst(binary, stream, sent, name='bench-stall') as dst:
        dst.qmp.sock.settimeout(5.0)
        rtts = []
        for _ in range(SAMPLES):
            t0 = time.monotonic()
            try:
                dst.cmd('query-status')
            except (TimeoutError, socket.timeout):
                rtts.append(float('inf'))
                break
            rtts.append(time.monotonic() - t0)
        t0 = time.monotonic()
        dst.proc.send_signal(signal.SIGTERM)
        try:
            dst.proc.wait(10)
            took = time.monotonic() - t0
        except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired
            took = float('inf')
        return rtts, took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--series', required=True)
    ap.add_argument('--stock', required=True)
    ap.add_argument('--reps', type=int, default=5)
    ap.add_argument('--out')
    args = ap.parse_args()
    bl.exit_on_sigterm()
    # tests/dst_stall.py starts every QEMU through tests/qemu_vm.py,
    # which passes -accel tcg whatever the machine has
    acc = 'tcg'
    bins = {'stock': args.stock, 'series': args.series}
    streams = {k: ds.record_stream(b) for k, b in bins.items()}
    points = {k: dict(ds.stall_points(s)) for k, s in streams.items()}
    res = {}
    for rep in range(args.reps):
        order = ('stock', 'series') if rep % 2 == 0 else ('series', 'stock')
        for name, _ in ds.stall_points(streams['series']):
            for k in order:
                rtts, took = one(bins[k], streams[k], points[k][name])
                r = res.setdefault((name, k), {'rtt': [], 'exit': []})
                r['rtt'] += rtts
                r['exit'].append(took)

    def ms(v):
        return 'no answer' if v == float('inf') else bl.fmt3(v * 1e3)

    lines = ['## Destination QMP latency while the source stalls', '',
             bl.machine_facts(acc), '',
             bl.binaries_line(args.stock, args.series), '',
             '%d repetitions, %d query-status round trips each; '
             'stream of %d bytes (series), stall points: %s.'
             % (args.reps, SAMPLES, len(streams['series']),
                ', '.join('%s at %d' % p
                          for p in ds.stall_points(streams['series']))),
             '',
             '| stall in | binary | QMP p50 ms | QMP max ms | exit after '
             'SIGTERM, worst s | p50 series/stock |',
             '|---|---|---|---|---|---|']
    for name, _ in ds.stall_points(streams['series']):
        p50 = {}
        for k in ('stock', 'series'):
            r = res[(name, k)]
            p50[k] = bl.median(r['rtt'])
            worst = max(r['exit'])
            lines.append('| %s | %s | %s | %s | %s | %s |' % (
                name, k, ms(p50[k]), ms(max(r['rtt'])),
                'did not exit' if worst == float('inf') else
                bl.fmt3(worst),
                bl.ratio(p50['series'], p50['stock'])
                if k == 'series' else ''))
    bl.write_report('\n'.join(lines) + '\n', args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())

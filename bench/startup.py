#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Startup time to the first QMP reply, series against stock 10.2.2.

QEMU is started with its QMP monitor connecting to a socket this script
listens on (so no polling is involved); the times measured run from the
spawn to QMP's greeting and to the reply to qmp_capabilities.  Three
variants run in alternation, several times each:

  stock    stock 10.2.2, -incoming defer
  series   the series, -incoming defer
  config   the series, -incoming defer plus -incoming config: with ten
           parameters

and the report gives the median and the spread of each and the ratios
series/stock and config/series (the overhead of config:).  Times on a
shared machine vary by a few percent; so, if valgrind is installed, the
instructions each variant executes up to the same point are counted
with callgrind too, which repeats to about 0.01%.  Nothing here
asserts a time: the figures describe this machine.

usage: startup.py --series BIN --stock BIN [--runs N] [--out FILE]
"""

import argparse
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import accel, version  # noqa: E402

CONFIG = ('config:multifd-channels=4,max-bandwidth=1G,downtime-limit=500,'
          'max-cpu-throttle=90,cpu-throttle-initial=30,'
          'cpu-throttle-increment=15,announce-rounds=6,'
          'xbzrle-cache-size=128M,multifd-compression=none,'
          'zero-page-detection=multifd')


def one_run(binary, extra, acc, tmpdir):
    path = os.path.join(tmpdir, 'qmp.sock')
    if os.path.exists(path):
        os.unlink(path)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    srv.settimeout(60)
    args = [binary, '-nodefaults', '-display', 'none', '-accel', acc,
            '-M', 'q35', '-m', '256M', '-qmp', 'unix:' + path,
            '-incoming', 'defer'] + extra
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        conn, _ = srv.accept()
        f = conn.makefile('rwb')
        f.readline()                        # greeting
        greeting = time.perf_counter() - start
        f.write(b'{"execute": "qmp_capabilities"}\n')
        f.flush()
        reply = f.readline()
        elapsed = time.perf_counter() - start
        if b'"return"' not in reply:
            raise RuntimeError('no reply: %r' % reply)
        f.write(b'{"execute": "quit"}\n')
        f.flush()
        f.readline()
        conn.close()
    finally:
        srv.close()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise RuntimeError('%s exited with %d: %s' % (
            binary, proc.returncode, proc.stderr.read().decode()))
    proc.stderr.close()
    return greeting, elapsed


def instructions(binary, extra, acc, tmpdir):
    """Instructions QEMU executes from its start to the reply to
    qmp_capabilities and quit, counted by callgrind: repeatable, unlike
    times (None without valgrind)."""
    if not shutil.which('valgrind'):
        return None
    out = os.path.join(tmpdir, 'callgrind.out')
    args = ['valgrind', '--tool=callgrind', '--callgrind-out-file=' + out,
            binary, '-nodefaults', '-display', 'none', '-accel', acc,
            '-M', 'q35', '-m', '256M', '-qmp', 'stdio',
            '-incoming', 'defer'] + extra
    p = subprocess.run(args, input='{"execute": "qmp_capabilities"}\n'
                       '{"execute": "quit"}\n', capture_output=True,
                       text=True, timeout=600)
    for line in p.stderr.splitlines():
        if 'Collected :' in line:
            return int(line.split(':')[-1])
    raise RuntimeError('callgrind: %s' % p.stderr[-500:])


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument('--series', required=True)
    ap.add_argument('--stock', required=True)
    ap.add_argument('--runs', type=int, default=40)
    ap.add_argument('--out', help='markdown report')
    args = ap.parse_args()

    acc = accel()
    variants = [('stock', args.stock, []),
                ('series', args.series, []),
                ('config', args.series, ['-incoming', CONFIG])]
    times = {name: [] for name, _, _ in variants}
    greetings = {name: [] for name, _, _ in variants}
    tmpdir = tempfile.mkdtemp(prefix='bench-startup-')
    try:
        for name, binary, extra in variants:     # warm the page cache
            one_run(binary, extra, acc, tmpdir)
        for i in range(args.runs):
            # Rotate the order, so that no variant always runs first
            for j in range(len(variants)):
                name, binary, extra = variants[(i + j) % len(variants)]
                g, r = one_run(binary, extra, acc, tmpdir)
                greetings[name].append(g)
                times[name].append(r)
        # Two counts per variant: they differ by a few thousand at most
        counts = {}
        for name, binary, extra in variants:
            c = [instructions(binary, extra, acc, tmpdir) for _ in (1, 2)]
            if None not in c:
                counts[name] = statistics.median(c)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)

    def ms(v):
        return '%.1f' % (v * 1000)

    med = {k: statistics.median(v) for k, v in times.items()}
    lines = [
        '## Startup to the first QMP reply',
        '',
        'Machine: %d cores, %s, accelerator %s; `-M q35 -m 256M '
        '-nodefaults -incoming defer`; %d runs of each variant, in '
        'rotation.' % (os.cpu_count(), platform.machine(), acc, args.runs),
        '',
        'stock: %s; series: %s' % (version(args.stock),
                                   version(args.series) + ' + series'),
        '',
        '| variant | greeting median ms | reply median ms | min ms | '
        'p90 ms | max ms |',
        '|---|---:|---:|---:|---:|---:|',
    ]
    for name in times:
        v = sorted(times[name])
        p90 = v[min(len(v) - 1, int(len(v) * 0.9))]
        lines.append('| %s | %s | %s | %s | %s | %s |' % (
            name, ms(statistics.median(greetings[name])), ms(med[name]),
            ms(v[0]), ms(p90), ms(v[-1])))
    lines += [
        '',
        'greeting: until QMP\'s greeting arrives; reply: until the reply '
        'to `qmp_capabilities` (min, p90, max are of the reply).',
    ]
    lines += [
        '',
        '| ratio | median |',
        '|---|---:|',
        '| series / stock, greeting | %.3f |' % (
            statistics.median(greetings['series']) /
            statistics.median(greetings['stock'])),
        '| series / stock, reply | %.3f |' % (med['series'] / med['stock']),
        '| config / series, greeting | %.3f |' % (
            statistics.median(greetings['config']) /
            statistics.median(greetings['series'])),
        '| config / series, reply (overhead of a ten-parameter config:) '
        '| %.3f |' % (med['config'] / med['series']),
        '',
        '`config` adds `-incoming %s`.' % CONFIG,
    ]
    if len(counts) == len(variants):
        lines += [
            '',
            'Instructions executed from start to the reply to '
            '`qmp_capabilities` and `quit`, counted by callgrind (median '
            'of two runs; repeatable to about 0.01%):',
            '',
            '| variant | instructions |',
            '|---|---:|',
        ]
        lines += ['| %s | %d |' % (n, counts[n]) for n in counts]
        lines += [
            '',
            '| ratio | instructions |',
            '|---|---:|',
            '| series / stock | %.4f |' % (counts['series'] /
                                           counts['stock']),
            '| config / series | %.4f |' % (counts['config'] /
                                            counts['series']),
        ]
    else:
        lines += ['', 'No instruction counts: valgrind is not installed.']
    text = '\n'.join(lines) + '\n'
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)),
                    exist_ok=True)
        with open(args.out, 'w') as f:
            f.write(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())

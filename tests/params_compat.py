#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""QMP compatibility of migration parameters: series against stock 10.2.2.

Both binaries are started side by side and given the same sequence of
migrate-set-parameters requests: every parameter with values stock
accepts (null and "" for the TLS options, an empty block-bitmap-mapping
included), then values both must refuse.  After each request the two
query-migrate-parameters results must be the same JSON; a refused
request must change nothing; the series' errors must name the
parameter as QMP spells it.  HMP `info migrate_parameters` must print
the same text, but for the multifd compression levels, which only the
series prints.  Parameters the series adds (SERIES_PARAMS) are left out
of the comparison, and must keep their defaults where they exist.
"""

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qemu_vm import TAP, VM, QMPError  # noqa: E402

# Parameters stock 10.2.2 does not have, with their defaults
SERIES_PARAMS = {'local': False}

# Lines of info migrate_parameters that only the series prints
LEVEL_RE = re.compile(r'^(multifd-(zlib|zstd|qatzip)-level: \d+|%s: \w+)\r?$'
                      % '|'.join(SERIES_PARAMS))

MAPPING = [{'node-name': 'node0', 'alias': 'n0',
            'bitmaps': [{'name': 'bmap0', 'alias': 'b0'}]}]

# Values stock 10.2.2 accepts, per parameter.
VALID = [
    ('announce-initial', [100, 0]),
    ('announce-max', [1000]),
    ('announce-rounds', [10]),
    ('announce-step', [50]),
    ('throttle-trigger-threshold', [30, 100]),
    ('cpu-throttle-initial', [30, 1]),
    ('cpu-throttle-increment', [20]),
    ('cpu-throttle-tailslow', [True, False]),
    ('tls-creds', ['tls0', '', None]),
    ('tls-hostname', ['host.example', None, '']),
    ('tls-authz', ['authz0', None, '']),
    ('max-bandwidth', [1 << 20, 0]),
    ('avail-switchover-bandwidth', [1 << 20]),
    ('downtime-limit', [1000, 0]),
    ('x-checkpoint-delay', [1000]),
    ('multifd-channels', [8, 255, 1]),
    ('xbzrle-cache-size', [1 << 25]),
    ('max-postcopy-bandwidth', [1 << 20]),
    ('max-cpu-throttle', [90, 99]),
    ('multifd-compression', ['zlib', 'none']),
    ('multifd-zlib-level', [5, 0]),
    ('multifd-qatzip-level', [5]),
    ('multifd-zstd-level', [5, 20]),
    ('block-bitmap-mapping', [MAPPING, []]),
    ('x-vcpu-dirty-limit-period', [500]),
    ('vcpu-dirty-limit', [10]),
    ('mode', ['cpr-reboot', 'normal']),
    ('zero-page-detection', ['legacy', 'none', 'multifd']),
    ('direct-io', [True, False]),
    ('cpr-exec-command', [['qemu', '-incoming', 'defer'], []]),
]

# Requests both must refuse: (arguments, parameter the error names).
INVALID = [
    ({'multifd-channels': 0}, 'multifd-channels'),
    ({'multifd-channels': 256}, 'multifd-channels'),
    ({'cpu-throttle-initial': 100}, 'cpu-throttle-initial'),
    ({'cpu-throttle-initial': 0}, 'cpu-throttle-initial'),
    ({'cpu-throttle-increment': 100}, 'cpu-throttle-increment'),
    ({'throttle-trigger-threshold': 0}, 'throttle-trigger-threshold'),
    ({'max-cpu-throttle': 10}, 'max-cpu-throttle'),
    ({'xbzrle-cache-size': 1000}, 'xbzrle-cache-size'),
    ({'downtime-limit': 2000001}, 'downtime-limit'),
    ({'announce-initial': 100001}, 'announce-initial'),
    ({'announce-step': 0}, 'announce-step'),
    ({'announce-rounds': 1001}, 'announce-rounds'),
    ({'multifd-zlib-level': 10}, 'multifd-zlib-level'),
    ({'multifd-qatzip-level': 0}, 'multifd-qatzip-level'),
    ({'multifd-zstd-level': 21}, 'multifd-zstd-level'),
    ({'x-vcpu-dirty-limit-period': 0}, 'x-vcpu-dirty-limit-period'),
    ({'vcpu-dirty-limit': 0}, 'vcpu-dirty-limit'),
    ({'tls-creds': 5}, 'tls-creds'),
    ({'multifd-compression': 'bogus'}, 'multifd-compression'),
    ({'mode': 'bogus'}, 'mode'),
    ({'no-such-parameter': 1}, 'no-such-parameter'),
    ({'block-bitmap-mapping': MAPPING + MAPPING}, 'block-bitmap-mapping'),
    ({'downtime-limit': 500, 'multifd-channels': 0}, 'multifd-channels'),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--qemu', required=True)
    ap.add_argument('--stock', required=True)
    args = ap.parse_args()
    tap = TAP()

    series = VM(args.qemu, name='series', machine='none')
    stock = VM(args.stock, name='stock', machine='none',
               tmpdir=series.tmpdir)
    try:
        series.start()
        stock.start()

        def same(what):
            a = series.cmd('query-migrate-parameters')
            b = stock.cmd('query-migrate-parameters')
            # (a series build from before a parameter has none)
            extra = {name: a.pop(name, default)
                     for name, default in SERIES_PARAMS.items()}
            tap.ok(a == b and extra == SERIES_PARAMS,
                   'same query after ' + what,
                   'series: %r (and %r)\nstock:  %r' % (a, extra, b))
            return a

        def same_hmp(what):
            # The series prints the compression levels stock leaves out
            a = ''.join(line for line in
                        series.hmp('info migrate_parameters')
                        .splitlines(True)
                        if not LEVEL_RE.match(line))
            b = stock.hmp('info migrate_parameters')
            tap.ok(a == b, 'same HMP info migrate_parameters ' + what,
                   'series:\n%s\nstock:\n%s' % (a, b))

        same('start')
        same_hmp('at start')

        for name, values in VALID:
            for value in values:
                what = 'setting %s to %r' % (name, value)
                try:
                    series.cmd('migrate-set-parameters', {name: value})
                    stock.cmd('migrate-set-parameters', {name: value})
                except QMPError as e:
                    tap.ok(False, what, e)
                    continue
                same(what)

        everything = {name: values[0] for name, values in VALID
                      if name != 'multifd-compression'}
        series.cmd('migrate-set-parameters', everything)
        stock.cmd('migrate-set-parameters', everything)
        same('setting every parameter at once')

        same_hmp('after sets')

        for request, name in INVALID:
            before = series.cmd('query-migrate-parameters')
            errs = []
            for vm in (series, stock):
                try:
                    vm.cmd('migrate-set-parameters', request)
                    errs.append(None)
                except QMPError as e:
                    errs.append(e.desc)
            tap.ok(errs[0] is not None and errs[1] is not None,
                   'both refuse %r' % request,
                   'series: %s\nstock:  %s' % tuple(errs))
            tap.ok(errs[0] is not None and
                   re.search(r'(?<![\w-])%s(?![\w-])' % re.escape(name),
                             errs[0]) is not None,
                   'series error names %s: %s' % (name, errs[0]),
                   'stock said: %s' % errs[1])
            after = series.cmd('query-migrate-parameters')
            tap.ok(before == after, 'refused %r changes nothing' % request)
            same('refusing %r' % request)
    except Exception as e:  # report, do not hide, unexpected failures
        tap.ok(False, 'unexpected exception: %r' % e,
               series.output() + stock.output())
    finally:
        series.cleanup()
        stock.cleanup()
    return tap.done()


if __name__ == '__main__':
    sys.exit(main())

#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Side-by-side table of two tests/run.py results (series vs stock)."""

import json
import sys


def cases(path):
    with open(path) as f:
        data = json.load(f)
    out = {}
    for s in data['suites']:
        for verdict in ('passed', 'failed', 'skipped'):
            for name in s[verdict]:
                out[name] = verdict
        out.setdefault('(time, s)', 0)
        out['(time, s)'] += s['seconds']
    return out


def main():
    series, stock = cases(sys.argv[1]), cases(sys.argv[2])
    names = sorted(set(series) | set(stock) - {'(time, s)'})
    print('| test | series | stock 10.2.2 |')
    print('|---|---|---|')
    regressions = 0
    for n in names:
        if n == '(time, s)':
            continue
        a, b = series.get(n, '-'), stock.get(n, '-')
        mark = ''
        if a == 'failed' and b != 'failed':
            mark = ' **regression**'
            regressions += 1
        print('| %s | %s%s | %s |' % (n, a, mark, b))
    for label, d in (('series', series), ('stock', stock)):
        v = list(d.values())
        print()
        print('%s: %d passed, %d failed, %d skipped, %.0f s' % (
            label, v.count('passed'), v.count('failed'), v.count('skipped'),
            d.get('(time, s)', 0)))
    print()
    print('regressions against stock: %d' % regressions)


if __name__ == '__main__':
    main()

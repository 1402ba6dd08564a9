#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Upstream migration-test --full and iotests, case by case, series
against stock.

Lists the cases of both builds' migration-test (``--full -l``) and runs
each one with ``-p CASE``, then the iotests of the groups `make check`
runs (``suites.IOTESTS``: group migration for qcow2 and raw), one by one
as ``iotests/FMT/TEST`` through tests/iotests.py; each case runs on the
series and on stock 10.2.2 in turn (the
side that goes first alternates), so that both see the same machine
load and a run stopped half way still compares like with like.  Results
are written after every case; ``--resume`` skips the cases a previous
run in the same log directory finished, ``--shard K/N`` runs every Nth
case starting with the Kth.

Writes LOGDIR/results.json and LOGDIR/table.md; exits 1 if a case
fails on the series and not on stock.
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import iotests  # noqa: E402
import run  # noqa: E402
import suites  # noqa: E402

TESTS = os.path.dirname(os.path.abspath(__file__))


def migration_test(build):
    return os.path.join(build, 'tests', 'qtest', 'migration-test')


def list_cases(build):
    env = dict(os.environ)
    env.update(suites.qtest_env(build))
    out = subprocess.run([migration_test(build), '--full', '-l'], cwd=build,
                         env=env, capture_output=True, text=True,
                         timeout=300, check=True).stdout
    return [line.strip() for line in out.splitlines()
            if line.startswith('/')]


def list_iotests(build):
    cases = []
    for fmt, group in suites.IOTESTS:
        cases += ['iotests/%s/%s' % (fmt, t)
                  for t in iotests.list_tests(build, fmt, ['-g', group])]
    return cases


def run_iotest(build, case, logdir, side, timeout):
    _, fmt, test = case.split('/', 2)
    suite = {
        'name': '%s/%s' % (side, case),
        'cmd': ['python3', os.path.join(TESTS, 'iotests.py'), '--build',
                build, '-f', fmt, '--timeout', str(timeout), test],
        'timeout': timeout + 120,
    }
    res = run.run_suite(suite, logdir)
    name = '%s/%s' % (fmt, test)
    if res.failed:
        verdict = 'failed'
    elif name in res.passed:
        verdict = 'passed'
    elif name in res.skipped:
        verdict = 'skipped'
    else:
        verdict = 'failed'
    return {'verdict': verdict, 'seconds': round(res.seconds, 1),
            'log': os.path.relpath(res.note, logdir)}


def run_case(build, case, cases, logdir, side, timeout):
    if case.startswith('iotests/'):
        return run_iotest(build, case, logdir, side, timeout)
    # -p also runs the cases below @case: skip them, they run on their own
    skip = []
    for c in cases:
        if c.startswith(case + '/'):
            skip += ['-s', c]
    suite = {
        'name': '%s%s' % (side, case),
        'cmd': [migration_test(build), '--tap', '-k', '--full', '-p',
                case] + skip,
        'cwd': build,
        'env': suites.qtest_env(build),
        'timeout': timeout,
    }
    res = run.run_suite(suite, logdir)
    if case in res.failed or any(not n.startswith('/') for n in res.failed):
        verdict = 'failed'
    elif case in res.passed:
        verdict = 'passed'
    elif case in res.skipped:
        verdict = 'skipped'
    else:
        verdict = 'failed'
    return {'verdict': verdict, 'seconds': round(res.seconds, 1),
            'log': os.path.relpath(res.note, logdir)}


def table(results, cases):
    lines = ['| case | series | stock 10.2.2 | series s | stock s |',
             '|---|---|---|---:|---:|']
    regressions = []
    totals = {'series': [0, 0, 0, 0.0], 'stock': [0, 0, 0, 0.0]}
    for case in cases:
        r = results.get(case)
        if not r:
            continue
        a = r.get('series', {}).get('verdict', '-')
        b = r.get('stock', {}).get('verdict', '-')
        mark = ''
        if a == 'failed' and b != 'failed':
            mark = ' **regression**'
            regressions.append(case)
        lines.append('| %s | %s%s | %s | %s | %s |' % (
            case, a, mark, b, r.get('series', {}).get('seconds', '-'),
            r.get('stock', {}).get('seconds', '-')))
        for side in ('series', 'stock'):
            v = r.get(side)
            if not v:
                continue
            t = totals[side]
            t[('passed', 'failed', 'skipped').index(v['verdict'])] += 1
            t[3] += v['seconds']
    lines.append('')
    for side, t in totals.items():
        lines.append('%s: %d passed, %d failed, %d skipped, %.0f s' %
                     (side, t[0], t[1], t[2], t[3]))
    lines.append('')
    lines.append('cases run: %d of %d; regressions against stock: %d%s' % (
        sum(1 for c in cases if c in results), len(cases), len(regressions),
        (' (' + ', '.join(regressions) + ')') if regressions else ''))
    return '\n'.join(lines) + '\n', regressions


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument('--series', required=True, help='series build directory')
    ap.add_argument('--stock', required=True, help='stock build directory')
    ap.add_argument('--logdir', required=True)
    ap.add_argument('--shard', default='1/1', help='K/N')
    ap.add_argument('--resume', action='store_true')
    ap.add_argument('--reuse-stock', action='store_true',
                    help='take the stock results of the previous run in\n'
                    'LOGDIR (the same stock binary) and run the series only')
    ap.add_argument('--timeout', type=int, default=1200,
                    help='seconds one case may take on one build')
    args = ap.parse_args()

    k, n = (int(x) for x in args.shard.split('/'))
    if not 1 <= k <= n:
        ap.error('--shard must be K/N with 1 <= K <= N')
    series_cases = list_cases(args.series) + list_iotests(args.series)
    stock_cases = set(list_cases(args.stock) + list_iotests(args.stock))
    cases = series_cases + sorted(stock_cases - set(series_cases))
    mine = [c for i, c in enumerate(cases) if i % n == k - 1]

    for side in ('series', 'stock'):
        os.makedirs(os.path.join(args.logdir, side), exist_ok=True)
    path = os.path.join(args.logdir, 'results.json')
    results = {}
    previous = {}
    if (args.resume or args.reuse_stock) and os.path.exists(path):
        with open(path) as f:
            previous = json.load(f)['cases']
    if args.resume:
        results = previous
    print('%d cases (%d in this shard, %d done before)' % (
        len(cases), len(mine),
        sum(1 for c in mine if c in results)), flush=True)
    builds = {'series': args.series, 'stock': args.stock}
    have = {'series': set(series_cases), 'stock': stock_cases}
    start = time.monotonic()
    for i, case in enumerate(mine):
        if case in results:
            continue
        order = ['series', 'stock'] if i % 2 == 0 else ['stock', 'series']
        r = {}
        if args.reuse_stock and 'stock' in previous.get(case, {}):
            r['stock'] = previous[case]['stock']
        for side in order:
            if case not in have[side] or side in r:
                continue
            r[side] = run_case(builds[side], case, cases,
                               os.path.join(args.logdir, side), side,
                               args.timeout)
        results[case] = r
        print('%-70s series %-7s stock %-7s (%.0f min)' % (
            case, r.get('series', {}).get('verdict', '-'),
            r.get('stock', {}).get('verdict', '-'),
            (time.monotonic() - start) / 60), flush=True)
        with open(path + '.tmp', 'w') as f:
            json.dump({'cases': results}, f, indent=1)
        os.replace(path + '.tmp', path)
        text, _ = table(results, cases)
        with open(os.path.join(args.logdir, 'table.md'), 'w') as f:
            f.write(text)
    text, regressions = table(results, cases)
    with open(os.path.join(args.logdir, 'table.md'), 'w') as f:
        f.write(text)
    print()
    print(text)
    return 1 if regressions else 0


if __name__ == '__main__':
    sys.exit(main())

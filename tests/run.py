#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Run test programs that speak TAP and add up their results.

Each suite is a command that prints TAP (``ok N name``, ``not ok N name``,
``# SKIP`` directives).  A command that exits non-zero, times out or prints
no result counts as a failure of its own, so a crash cannot pass unseen.
The last line printed is ``N passed, N failed, N skipped``.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time

TAP_RE = re.compile(r'^(not ok|ok)\b\s*(\d+)?\s*-?\s*([^#]*?)\s*(#\s*(.*))?$')


class Result:
    def __init__(self, suite):
        self.suite = suite
        self.passed = []
        self.failed = []
        self.skipped = []
        self.seconds = 0.0
        self.note = ''


def parse_tap(text, res):
    for line in text.splitlines():
        m = TAP_RE.match(line.strip())
        if not m:
            continue
        status, _num, name, _c, directive = m.groups()
        name = name.strip() or '(unnamed)'
        directive = (directive or '').strip()
        if directive.upper().startswith('SKIP'):
            res.skipped.append(name)
        elif status == 'ok':
            res.passed.append(name)
        elif directive.upper().startswith('TODO'):
            res.skipped.append(name + ' (todo)')
        else:
            res.failed.append(name)


def run_suite(suite, logdir):
    res = Result(suite['name'])
    env = dict(os.environ)
    env.update(suite.get('env', {}))
    log = os.path.join(logdir, suite['name'].replace('/', '_') + '.log')
    start = time.monotonic()
    with open(log, 'w') as out:
        out.write('$ ' + ' '.join(suite['cmd']) + '\n')
        out.flush()
        proc = subprocess.Popen(suite['cmd'], cwd=suite.get('cwd'), env=env,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL,
                                start_new_session=True, text=True,
                                errors='replace')
        try:
            text, _ = proc.communicate(timeout=suite.get('timeout', 600))
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            text, _ = proc.communicate()
            rc = None
        out.write(text)
    res.seconds = time.monotonic() - start
    parse_tap(text, res)
    if rc is None:
        res.failed.append('%s: timed out after %ss' % (suite['name'],
                                                       suite.get('timeout')))
    elif rc != 0 and not res.failed:
        res.failed.append('%s: exited with status %d' % (suite['name'], rc))
    elif not res.passed and not res.failed and not res.skipped:
        res.failed.append('%s: printed no test result' % suite['name'])
    res.note = log
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('suites', help='JSON file with a list of suites')
    ap.add_argument('--logdir', required=True)
    ap.add_argument('--only', action='append', default=[],
                    help='run only suites whose name contains this')
    args = ap.parse_args()

    with open(args.suites) as f:
        suites = json.load(f)
    if args.only:
        suites = [s for s in suites
                  if any(o in s['name'] for o in args.only)]
    os.makedirs(args.logdir, exist_ok=True)
    results = []
    for s in suites:
        print('--- %s' % s['name'], flush=True)
        r = run_suite(s, args.logdir)
        for n in r.failed:
            print('    FAIL %s' % n, flush=True)
        print('    %d passed, %d failed, %d skipped in %.0f s (log: %s)'
              % (len(r.passed), len(r.failed), len(r.skipped), r.seconds,
                 os.path.relpath(r.note)), flush=True)
        results.append(r)

    print()
    print('%-40s %6s %6s %6s %8s' % ('suite', 'pass', 'fail', 'skip', 'seconds'))
    for r in results:
        print('%-40s %6d %6d %6d %8.0f' % (r.suite, len(r.passed),
                                          len(r.failed), len(r.skipped),
                                          r.seconds))
    npass = sum(len(r.passed) for r in results)
    nfail = sum(len(r.failed) for r in results)
    nskip = sum(len(r.skipped) for r in results)
    summary = {'suites': [{'name': r.suite, 'passed': r.passed,
                           'failed': r.failed, 'skipped': r.skipped,
                           'seconds': round(r.seconds, 1)}
                          for r in results]}
    with open(os.path.join(args.logdir, 'results.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    print()
    print('%d passed, %d failed, %d skipped' % (npass, nfail, nskip))
    return 1 if nfail else 0


if __name__ == '__main__':
    sys.exit(main())

#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Print the list of test suites (JSON) that tests/run.py runs.

quick: what `make check` runs on the series build (with upstream's
       iotests group migration for qcow2 and raw, and the docs build).
full:  upstream migration-test --full, for one build (check-full runs it
       for the series and for stock 10.2.2).
"""

import argparse
import json
import os
import random
import sys

UNIT_TESTS = [
    'test-qobject-input-visitor',
    'test-qobject-output-visitor',
    'test-clone-visitor',
    'test-keyval',
    'test-visitor-serialization',
    'test-string-input-visitor',
    'test-string-output-visitor',
    'test-forward-visitor',
    'test-qmp-cmds',
    'test-qdev-global-props',
    'test-dealloc-present-visitor',
    'test-qapi-merge',
    'test-bql-scope',
]

# Upstream qtests and how long each may take on a loaded 2-core machine.
QTESTS = [
    ('migration-test', 2400),
    ('device-introspect-test', 900),
    ('qmp-cmd-test', 900),
    ('test-hmp', 900),
]


# Upstream's qemu-iotests that `make check` runs: (format, group).
IOTESTS = [('qcow2', 'migration'), ('raw', 'migration')]


def iotests(top, build, label, fmt, group):
    """One run of tests/iotests.py: one TAP line per iotest.  Its own
    timeout comes first, so that it kills what check left running."""
    return {
        'name': 'iotests/%s/%s-%s' % (label, fmt, group),
        'cmd': ['python3', os.path.join(top, 'tests', 'iotests.py'),
                '--build', build, '-f', fmt, '-g', group,
                '--timeout', '1500'],
        'timeout': 1800,
    }


def qtest_env(build):
    src = os.path.dirname(build)
    env = {
        'QTEST_QEMU_BINARY': os.path.join(build, 'qemu-system-x86_64'),
        'QTEST_QEMU_IMG': os.path.join(build, 'qemu-img'),
        'PYTHON': os.path.join(build, 'pyvenv', 'bin', 'python3'),
        'G_TEST_SRCDIR': os.path.join(src, 'tests', 'qtest'),
        'G_TEST_BUILDDIR': os.path.join(build, 'tests', 'qtest'),
        'MALLOC_PERTURB_': str(random.randint(1, 255)),
    }
    return env


def quick(top, build, stock):

    def with_stock(cmd):
        """@cmd with --stock, when a stock build is given"""
        if stock:
            return cmd + ['--stock', os.path.join(stock, 'qemu-system-x86_64')]
        return cmd

    src = os.path.dirname(build)
    suites = [
        {'name': 'series/hygiene',
         'cmd': ['bash', os.path.join(top, 'tests', 'series-hygiene.sh')],
         'timeout': 900},
        {'name': 'series/tooling',
         'cmd': ['bash', os.path.join(top, 'tests', 'tooling.sh')],
         'timeout': 600},
        # the docs as upstream builds them (Sphinx -W), in qemu/build-docs
        {'name': 'series/docs',
         'cmd': ['bash', os.path.join(top, 'tests', 'docs.sh'), src],
         'timeout': 1200},
    ]
    for t in UNIT_TESTS:
        if not os.path.exists(os.path.join(src, 'tests', 'unit', t + '.c')):
            continue
        suites.append({
            'name': 'unit/' + t,
            'cmd': [os.path.join(build, 'tests', 'unit', t), '--tap', '-k'],
            'cwd': build,
            'env': {'G_TEST_SRCDIR': os.path.join(src, 'tests', 'unit'),
                    'G_TEST_BUILDDIR': os.path.join(build, 'tests', 'unit')},
            'timeout': 300,
        })
    for t, timeout in QTESTS:
        suites.append({
            'name': 'qtest/' + t,
            'cmd': [os.path.join(build, 'tests', 'qtest', t), '--tap', '-k'],
            'cwd': build,
            'env': qtest_env(build),
            'timeout': timeout,
        })
    for fmt, group in IOTESTS:
        suites.append(iotests(top, build, 'series', fmt, group))
    # The postcopy recovery TLS test is in --full only: it shows that a
    # paused postcopy migration recovers with the TLS options it started
    # with, which the series no longer lets change while it runs.
    suites.append({
        'name': 'qtest/migration-test-postcopy-recovery-tls',
        'cmd': [os.path.join(build, 'tests', 'qtest', 'migration-test'),
                '--tap', '-k', '--full',
                '-p', '/x86_64/migration/postcopy/recovery/tls/psk'],
        'cwd': build,
        'env': qtest_env(build),
        'timeout': 600,
    })
    suites.append({
        'name': 'project/gating',
        'cmd': ['python3', os.path.join(top, 'tests', 'gating.py'),
                '--qemu', os.path.join(build, 'qemu-system-x86_64')],
        'timeout': 600,
    })
    cmd = with_stock(['python3', os.path.join(top, 'tests', 'incoming_config.py'),
                      '--qemu', os.path.join(build, 'qemu-system-x86_64')])
    suites.append({
        'name': 'project/incoming-config',
        'cmd': cmd,
        'timeout': 600,
    })
    cmd = with_stock(['python3', os.path.join(top, 'tests', 'client_flows.py'),
                      '--qemu', os.path.join(build, 'qemu-system-x86_64')])
    suites.append({
        'name': 'project/client-flows',
        'cmd': cmd,
        'timeout': 300,
    })
    suites.append({
        'name': 'project/shutdown-query',
        'cmd': ['python3', os.path.join(top, 'tests', 'shutdown_query.py'),
                '--runs', '20', '--label', 'series',
                os.path.join(build, 'qemu-system-x86_64')],
        'timeout': 600,
    })
    suites.append({
        'name': 'project/params-compat',
        'cmd': ['python3', os.path.join(top, 'tests', 'params_compat.py'),
                '--qemu', os.path.join(build, 'qemu-system-x86_64'),
                '--stock', os.path.join(stock, 'qemu-system-x86_64')],
        'timeout': 300,
    })
    suites.append({
        'name': 'project/dst-load',
        'cmd': ['python3', os.path.join(top, 'tests', 'dst_load.py'),
                '--qemu', os.path.join(build, 'qemu-system-x86_64'),
                '--series'],
        'timeout': 900,
    })
    cmd = with_stock(['python3', os.path.join(top, 'tests', 'dst_stall.py'),
                      '--qemu', os.path.join(build, 'qemu-system-x86_64')])
    suites.append({
        'name': 'project/dst-stall',
        'cmd': cmd,
        'timeout': 300,
    })
    # part F, once the tree has it; root, in a network namespace of its
    # own, skipped with the reason where it cannot make one
    with open(os.path.join(src, 'qapi', 'net.json')) as f:
        has_local_tap = 'x-local-migration-supported' in f.read()
    if has_local_tap:
        suites.append({
            'name': 'project/local-tap',
            'cmd': ['python3', os.path.join(top, 'tests', 'local_tap.py'),
                    '--qemu', os.path.join(build, 'qemu-system-x86_64')],
            'timeout': 600,
        })
        # a real guest pinged through tap0 during a local and a plain
        # migration (Debian's kernel, downloaded once and cached)
        suites.append({
            'name': 'project/local-tap-guest',
            'cmd': ['python3', os.path.join(top, 'tests',
                                            'local_tap_guest.py'),
                    '--qemu', os.path.join(build, 'qemu-system-x86_64')],
            'timeout': 900,
        })
    suites.append({
        'name': 'project/smoke',
        'cmd': ['python3', os.path.join(top, 'tests', 'smoke.py'),
                '--qemu', os.path.join(build, 'qemu-system-x86_64')],
        'timeout': 600,
    })
    return suites


def full(top, build, label):
    return [{
        'name': 'full/%s/migration-test' % label,
        'cmd': [os.path.join(build, 'tests', 'qtest', 'migration-test'),
                '--tap', '-k', '--full'],
        'cwd': build,
        'env': qtest_env(build),
        'timeout': 5400,
    }]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('mode', choices=['quick', 'full'])
    ap.add_argument('--top', required=True)
    ap.add_argument('--build', required=True)
    ap.add_argument('--label', default='series')
    ap.add_argument('--stock', help='build directory of stock QEMU')
    args = ap.parse_args()
    if args.mode == 'quick':
        suites = quick(args.top, args.build, args.stock)
    else:
        suites = full(args.top, args.build, args.label)
    json.dump(suites, sys.stdout, indent=1)


if __name__ == '__main__':
    main()

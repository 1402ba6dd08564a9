#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""A dependency-free PNG line plot of destination QMP latency.

Standard library only (zlib and struct write the PNG, a 5x7 bitmap
font the labels), so that `make bench` needs nothing beyond Python.
It draws a row per RAM variant and a panel per binary (stock left,
series right; shared axes): the round-trip time of each query-status
sent to the destination (log scale, ms) against time relative to
`migrate` on the source, as steps (each command at the height of its
RTT from its sending to its reply), one line per repetition.

usage: pngplot.py CSV PNG [TITLE-SUFFIX]
  CSV is the file dst_latency.py writes (binary,variant,rep,t_s,rtt_ms);
  TITLE-SUFFIX is appended to the title, e.g. ' (2 GiB, tcg)'.
"""

import csv
import math
import struct
import sys
import zlib

COLOURS = {'stock': (214, 39, 40), 'series': (31, 119, 180)}
OTHER = [(44, 160, 44), (148, 103, 189), (255, 127, 14)]

_FONT_SRC = {
    '0': '.###. #...# #..## #.#.# ##..# #...# .###.',
    '1': '..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.',
    '2': '.###. #...# ....# ...#. ..#.. .#... #####',
    '3': '##### ...#. ..#.. ...#. ....# #...# .###.',
    '4': '...#. ..##. .#.#. #..#. ##### ...#. ...#.',
    '5': '##### #.... ####. ....# ....# #...# .###.',
    '6': '..##. .#... #.... ####. #...# #...# .###.',
    '7': '##### ....# ...#. ..#.. .#... .#... .#...',
    '8': '.###. #...# #...# .###. #...# #...# .###.',
    '9': '.###. #...# #...# .#### ....# ...#. .##..',
    '.': '..... ..... ..... ..... ..... .##.. .##..',
    ',': '..... ..... ..... ..... .##.. ..#.. .#...',
    '-': '..... ..... ..... .###. ..... ..... .....',
    ':': '..... .##.. .##.. ..... .##.. .##.. .....',
    ';': '..... .##.. .##.. ..... .##.. ..#.. .#...',
    '(': '...#. ..#.. .#... .#... .#... ..#.. ...#.',
    ')': '.#... ..#.. ...#. ...#. ...#. ..#.. .#...',
    '/': '..... ....# ...#. ..#.. .#... #.... .....',
    '=': '..... ..... ##### ..... ##### ..... .....',
    '%': '##... ##..# ...#. ..#.. .#... #..## ...##',
    '+': '..... ..#.. ..#.. ##### ..#.. ..#.. .....',
    '_': '..... ..... ..... ..... ..... ..... #####',
    ' ': '..... ..... ..... ..... ..... ..... .....',
    '?': '.###. #...# ....# ...#. ..#.. ..... ..#..',
    'A': '.###. #...# #...# ##### #...# #...# #...#',
    'B': '####. #...# #...# ####. #...# #...# ####.',
    'C': '.###. #...# #.... #.... #.... #...# .###.',
    'D': '###.. #..#. #...# #...# #...# #..#. ###..',
    'E': '##### #.... #.... ####. #.... #.... #####',
    'F': '##### #.... #.... ####. #.... #.... #....',
    'G': '.###. #...# #.... #.### #...# #...# .####',
    'H': '#...# #...# #...# ##### #...# #...# #...#',
    'I': '.###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.',
    'J': '..### ...#. ...#. ...#. ...#. #..#. .##..',
    'K': '#...# #..#. #.#.. ##... #.#.. #..#. #...#',
    'L': '#.... #.... #.... #.... #.... #.... #####',
    'M': '#...# ##.## #.#.# #.#.# #...# #...# #...#',
    'N': '#...# #...# ##..# #.#.# #..## #...# #...#',
    'O': '.###. #...# #...# #...# #...# #...# .###.',
    'P': '####. #...# #...# ####. #.... #.... #....',
    'Q': '.###. #...# #...# #...# #.#.# #..#. .##.#',
    'R': '####. #...# #...# ####. #.#.. #..#. #...#',
    'S': '.#### #.... #.... .###. ....# ....# ####.',
    'T': '##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..',
    'U': '#...# #...# #...# #...# #...# #...# .###.',
    'V': '#...# #...# #...# #...# #...# .#.#. ..#..',
    'W': '#...# #...# #...# #.#.# #.#.# #.#.# .#.#.',
    'X': '#...# #...# .#.#. ..#.. .#.#. #...# #...#',
    'Y': '#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..',
    'Z': '##### ....# ...#. ..#.. .#... #.... #####',
    'a': '..... ..... .###. ....# .#### #...# .####',
    'b': '#.... #.... #.##. ##..# #...# #...# ####.',
    'c': '..... ..... .###. #.... #.... #...# .###.',
    'd': '....# ....# .##.# #..## #...# #...# .####',
    'e': '..... ..... .###. #...# ##### #.... .###.',
    'f': '..##. .#..# .#... ###.. .#... .#... .#...',
    'g': '..... .#### #...# #...# .#### ....# ####.',
    'h': '#.... #.... #.##. ##..# #...# #...# #...#',
    'i': '..#.. ..... .##.. ..#.. ..#.. ..#.. .###.',
    'j': '...#. ..... ..##. ...#. ...#. #..#. .##..',
    'k': '#.... #.... #..#. #.#.. ##... #.#.. #..#.',
    'l': '.##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###.',
    'm': '..... ..... ##.#. #.#.# #.#.# #...# #...#',
    'n': '..... ..... #.##. ##..# #...# #...# #...#',
    'o': '..... ..... .###. #...# #...# #...# .###.',
    'p': '..... ..... ####. #...# #...# ####. #....',
    'q': '..... ..... .#### #...# #...# .#### ....#',
    'r': '..... ..... #.##. ##..# #.... #.... #....',
    's': '..... ..... .###. #.... .###. ....# ####.',
    't': '.#... .#... ###.. .#... .#... .#..# ..##.',
    'u': '..... ..... #...# #...# #...# #..## .##.#',
    'v': '..... ..... #...# #...# #...# .#.#. ..#..',
    'w': '..... ..... #...# #...# #.#.# #.#.# .#.#.',
    'x': '..... ..... #...# .#.#. ..#.. .#.#. #...#',
    'y': '..... ..... #...# #...# .#### ....# .###.',
    'z': '..... ..... ##### ...#. ..#.. .#... #####',
}
FONT = {c: [row for row in s.split()] for c, s in _FONT_SRC.items()}


class Canvas:
    """An RGB image in a bytearray, with just enough drawing."""

    def __init__(self, w, h, bg=(255, 255, 255)):
        self.w, self.h = w, h
        self.px = bytearray(bytes(bg) * (w * h))

    def set(self, x, y, c):
        if 0 <= x < self.w and 0 <= y < self.h:
            i = (y * self.w + x) * 3
            self.px[i:i + 3] = bytes(c)

    def rect(self, x0, y0, x1, y1, c):
        """Filled rectangle, corners included."""
        x0, x1 = max(0, min(x0, x1)), min(self.w - 1, max(x0, x1))
        y0, y1 = max(0, min(y0, y1)), min(self.h - 1, max(y0, y1))
        if x0 > x1 or y0 > y1:
            return
        row = bytes(c) * (x1 - x0 + 1)
        for y in range(y0, y1 + 1):
            i = (y * self.w + x0) * 3
            self.px[i:i + len(row)] = row

    def line(self, x0, y0, x1, y1, c, width=1, dash=0):
        """Bresenham; width 2 draws a 2x2 pen; dash N: N on, N off."""
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx = 1 if x0 < x1 else -1
        sy = 1 if y0 < y1 else -1
        err = dx + dy
        n = 0
        while True:
            if not dash or (n // dash) % 2 == 0:
                self.set(x0, y0, c)
                if width > 1:
                    self.set(x0 + 1, y0, c)
                    self.set(x0, y0 + 1, c)
                    self.set(x0 + 1, y0 + 1, c)
            n += 1
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def text(self, x, y, s, c, scale=1, anchor='left'):
        """Text with its top at y; anchor left, right or centre at x."""
        width = text_width(s, scale)
        if anchor == 'right':
            x -= width
        elif anchor == 'centre':
            x -= width // 2
        for ch in s:
            glyph = FONT.get(ch, FONT['?'])
            for r, row in enumerate(glyph):
                for k, bit in enumerate(row):
                    if bit == '#':
                        self.rect(x + k * scale, y + r * scale,
                                  x + k * scale + scale - 1,
                                  y + r * scale + scale - 1, c)
            x += 6 * scale

    def png(self):
        raw = bytearray()
        stride = self.w * 3
        for y in range(self.h):
            raw.append(0)
            raw += self.px[y * stride:(y + 1) * stride]

        def chunk(kind, data):
            body = kind + data
            return (struct.pack('>I', len(data)) + body +
                    struct.pack('>I', zlib.crc32(body) & 0xffffffff))
        return (b'\x89PNG\r\n\x1a\n' +
                chunk(b'IHDR', struct.pack('>IIBBBBB', self.w, self.h,
                                           8, 2, 0, 0, 0)) +
                chunk(b'IDAT', zlib.compress(bytes(raw), 9)) +
                chunk(b'IEND', b''))

    def save(self, path):
        with open(path, 'wb') as f:
            f.write(self.png())


def text_width(s, scale=1):
    return max(0, len(s) * 6 - 1) * scale


def nice_step(span, target=8):
    """A 1, 2 or 5 times a power of ten step giving ~target ticks."""
    if span <= 0:
        return 1.0
    raw = span / target
    p = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * p >= raw:
            return m * p
    return 10 * p


def fmt_ms(v):
    if v >= 1:
        return '%d' % round(v)
    return ('%.6f' % v).rstrip('0')


def colour_of(label, seen):
    if label in COLOURS:
        return COLOURS[label]
    if label not in seen:
        seen[label] = OTHER[len(seen) % len(OTHER)]
    return seen[label]


def plot(rows, path, width=1200, panel_h=300, title_suffix=''):
    """Draw a grid of panels and write a PNG.

    rows: a list of rows, each a list of panels; a panel is a dict with
    'title' and 'runs', a list of (label, [(t_s, rtt_ms), ...]) where
    t_s is when a command was sent.  Every panel shares the log y axis,
    the panels of a row share the time axis.  A run is drawn as steps:
    each command at the height of its RTT from its sending to its
    reply.
    """
    dark = (30, 30, 30)
    top = 34
    cols = max(len(r) for r in rows) if rows else 1
    c = Canvas(width, top + panel_h * len(rows) + 8)
    title = ('Destination query-status round-trip time during precopy '
             'load' + title_suffix)
    scale = 2 if text_width(title, 2) <= width - 20 else 1
    c.text(width // 2, 8, title, dark, scale, 'centre')
    rtts = [r for row in rows for p in row for _, pts in p['runs']
            for _, r in pts if r > 0] or [0.01, 1]
    lo = math.floor(math.log10(min(rtts)))
    hi = max(lo + 1, math.ceil(math.log10(max(rtts))))
    extra = {}
    pw = width // cols
    for i, row in enumerate(rows):
        ts = [0.0]
        for p in row:
            for _, pts in p['runs']:
                ts += [t for t, _ in pts] + [t + r / 1e3 for t, r in pts]
        t0, t1 = min(ts), max(ts)
        if t1 <= t0:
            t1 = t0 + 1
        for j, p in enumerate(row):
            box = (j * pw, top + i * panel_h, (j + 1) * pw, panel_h)
            _panel(c, box, p, (t0, t1), (lo, hi), extra)
    c.save(path)


def _panel(c, box, p, trange, decades, extra):
    grey, dark, light = (120, 120, 120), (30, 30, 30), (225, 225, 225)
    x_left, y_top, x_right, h = box
    t0, t1 = trange
    lo, hi = decades
    left, right = x_left + 64, x_right - 16
    ptop, pbot = y_top + 34, y_top + h - 42

    def X(t):
        return left + int(round((t - t0) / (t1 - t0) * (right - left)))

    def Y(r):
        v = math.log10(max(r, 10 ** lo))
        return pbot - int(round((v - lo) / (hi - lo) * (pbot - ptop)))

    c.text(left, y_top + 4, p['title'], dark, 2)
    for d in range(lo, hi + 1):             # grid, one line per decade
        y = Y(10 ** d)
        c.line(left, y, right, y, light)
        c.text(left - 6, y - 3, fmt_ms(10 ** d), dark, 1, 'right')
    c.text(left - 6, ptop - 12, 'RTT ms', dark, 1, 'right')
    step = nice_step(t1 - t0, max(3, (right - left) // 60))
    t = math.ceil(t0 / step) * step
    while t <= t1 + 1e-9:
        x = X(t)
        c.line(x, ptop, x, pbot, light)
        c.line(x, pbot, x, pbot + 4, dark)
        c.text(x, pbot + 8, ('%g' % round(t, 6)), dark, 1, 'centre')
        t += step
    c.text((left + right) // 2, pbot + 22,
           't (s) since migrate was sent to the source', dark, 1,
           'centre')
    c.line(X(0), ptop, X(0), pbot, grey, 1, 3)
    # data: stock first, so that anything else is drawn on top
    labels = []
    for label, pts in sorted(p['runs'], key=lambda r: r[0] != 'stock'):
        col = colour_of(label, extra)
        if label not in labels:
            labels.append(label)
        # A step per command: at its RTT from when it was sent to when
        # its reply came, then down or up to the next one.
        prev = None
        for t, r in pts:
            x0, x1, y = X(t), X(t + r / 1000.0), Y(r)
            if prev is not None and (x0, y) != prev:
                c.line(prev[0], prev[1], x0, y, col)
            if x1 > x0:
                c.line(x0, y, x1, y, col)
            if len(pts) < 300:
                c.rect(x0 - 1, y - 1, x0 + 1, y + 1, col)
            prev = (x1, y)
    c.line(left, ptop, left, pbot, dark)    # axes
    c.line(left, pbot, right, pbot, dark)
    x = right - 8                           # legend, top right
    for label in reversed(labels):
        c.text(x, ptop + 6, label, dark, 2, 'right')
        x -= text_width(label, 2) + 6
        c.rect(x - 14, ptop + 6, x, ptop + 19, colour_of(label, extra))
        x -= 28


def panels_from_csv(path):
    """Rows of panels from a dst_latency.py CSV: a row per variant, a
    panel per binary (stock first), one run per repetition."""
    runs = {}
    order = []
    with open(path, newline='') as f:
        for row in csv.DictReader(f):
            key = (row['variant'], row['binary'], row['rep'])
            if key not in runs:
                runs[key] = []
                order.append(key)
            runs[key].append((float(row['t_s']), float(row['rtt_ms'])))
    names = {'zero': 'zero pages', 'random': 'random data'}
    rows = []
    for variant in dict.fromkeys(k[0] for k in order):
        binaries = sorted(dict.fromkeys(k[1] for k in order
                                        if k[0] == variant),
                          key=lambda b: (b != 'stock', b))
        row = []
        for b in binaries:
            row.append({
                'title': 'RAM %s: %s' % (names.get(variant, variant), b),
                'runs': [(b, runs[k]) for k in order
                         if k[0] == variant and k[1] == b]})
        rows.append(row)
    return rows


def main():
    if len(sys.argv) not in (3, 4):
        print(__doc__.strip().splitlines()[-3], file=sys.stderr)
        return 2
    plot(panels_from_csv(sys.argv[1]), sys.argv[2],
         title_suffix=sys.argv[3] if len(sys.argv) > 3 else '')
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""The Keras progress bar (keras.utils.Progbar), in Keras 3's format.

On a terminal the line is redrawn in place; when stdout is not a terminal nothing is written
until the line is final, so logs get one clean line per epoch and no carriage returns.
"""
from __future__ import annotations

import math
import os
import sys
import time


def _format_time(seconds_per_unit, unit_name):
    if seconds_per_unit >= 1 or seconds_per_unit == 0:
        return f"{seconds_per_unit:.0f}s/{unit_name}"
    if seconds_per_unit >= 1e-3:
        return f"{seconds_per_unit * 1e3:.0f}ms/{unit_name}"
    return f"{seconds_per_unit * 1e6:.0f}us/{unit_name}"


def _format_value(v):
    return f"{v:.4f}" if abs(v) > 1e-3 else f"{v:.4e}"


class Progbar:
    def __init__(self, target, width=20, verbose=1, interval=0.05, stateful_metrics=None, unit_name="step",
                 all_stateful=False):
        self.target, self.width, self.verbose, self.interval = target, width, verbose, interval
        self.unit_name = unit_name
        self.stateful_metrics = set(stateful_metrics or ())
        self.all_stateful = all_stateful
        self._dynamic_display = (hasattr(sys.stdout, "isatty") and sys.stdout.isatty()) or \
            "ipykernel" in sys.modules or "posix" == os.environ.get("KCOMPILE_PROGBAR_DYNAMIC")
        self._values = {}
        self._order = []
        self._seen_so_far = 0
        self._start = time.time()
        self._last_update = 0.0
        self._prev_width = 0

    def update(self, current, values=None, finalize=None):
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        for k, v in values or []:
            if k not in self._order:
                self._order.append(k)
            if self.all_stateful or k in self.stateful_metrics:
                self._values[k] = [v, 1]
            else:
                steps = max(current - self._seen_so_far, 1)
                total, count = self._values.get(k, [0.0, 0])
                self._values[k] = [total + v * steps, count + steps]
        self._seen_so_far = current
        now = time.time()
        if self.verbose == 0:
            return
        if self.verbose == 2 and not finalize:
            return
        if not finalize and (not self._dynamic_display or now - self._last_update < self.interval):
            return
        self._last_update = now
        elapsed = now - self._start
        per_unit = elapsed / current if current else 0.0
        line = self._bar(current) if self.verbose == 1 else ""
        if self.target is None or finalize:
            info = f"{int(elapsed)}s {_format_time(per_unit, self.unit_name)}"
        else:
            eta = per_unit * (self.target - current)
            info = f"{int(eta) // 60}:{int(eta) % 60:02d}" if eta > 3600 or eta >= 60 else f"{int(eta)}s"
        for k in self._order:
            total, count = self._values[k]
            info += f" - {k}: {_format_value(total / max(count, 1))}"
        line = (line + " " + info) if line else info
        out = sys.stdout
        if self._dynamic_display:
            out.write("\r" + line + " " * max(0, self._prev_width - len(line)))
            self._prev_width = len(line)
            if finalize:
                out.write("\n")
        else:
            out.write(line + "\n")
        out.flush()

    def _bar(self, current):
        if self.target is None:
            return f"{current}"
        digits = int(math.log10(max(self.target, 1))) + 1
        count = f"{current:{digits}d}/{self.target}"
        filled = int(self.width * min(current, self.target) / max(self.target, 1))
        if self._dynamic_display:
            bar = "\x1b[32m" + "━" * filled + "\x1b[0m" + "\x1b[37m" + "━" * (self.width - filled) + "\x1b[0m"
        else:
            bar = "━" * self.width
        return f"{count} {bar}"

    def add(self, n, values=None):
        self.update(self._seen_so_far + n, values)

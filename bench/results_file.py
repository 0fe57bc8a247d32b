"""bench/RESULTS.md holds one section per benchmark script, each between its own markers, so
every script rewrites only its own table."""
from __future__ import annotations

import os

PATH = os.path.join(os.path.dirname(__file__), "RESULTS.md")
HEADER = "# Benchmark results\n\nEach section is written by the script it names. Ratios are against kcompile in the same run.\n"


def write_section(name, text):
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    current = open(PATH).read() if os.path.exists(PATH) else HEADER
    block = f"{begin}\n{text.rstrip()}\n{end}"
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        current = head + block + rest.split(end, 1)[1]
    else:
        current = current.rstrip() + "\n\n" + block + "\n"
    with open(PATH, "w") as f:
        f.write(current)

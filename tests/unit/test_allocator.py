"""shared.runtime.tune_allocator: memory freed by a long-running service goes back to the system."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shared.runtime import _glibc

# A big block freed early raises glibc's dynamic mmap threshold; then blocks of 512 KB are
# allocated with small long-lived ones between them (as numpy temporaries are, between an
# index's growing arrays), and the big ones are freed. Prints the RSS growth that remains (MB).
SCRIPT = """
import sys
from shared.runtime import tune_allocator
if sys.argv[1] == "tuned":
    assert tune_allocator()
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) / 1024
first = bytearray(8 << 20)
del first
before = rss()
big, keep = [], []
for _ in range(300):
    big.append(bytearray(512 * 1024))
    keep.append(bytearray(2048))
del big
print(rss() - before)
"""


def grown_mb(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True, timeout=60)
    return float(out.stdout.strip())


@pytest.mark.skipif(_glibc() is None, reason="glibc's allocator only")
def test_freed_blocks_go_back_to_the_system_once_tuned() -> None:
    untuned, tuned = grown_mb("default"), grown_mb("tuned")
    assert untuned > 100, f"the scenario no longer keeps freed memory without tuning ({untuned:.0f} MB)"
    assert tuned < 20, f"{tuned:.0f} MB of 150 MB freed stayed with the process"

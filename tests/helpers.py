"""Small helpers shared by several test files (not tests themselves)."""

import os


def snapshot(*dirs) -> dict:
    """Every folder and file under ``dirs`` with size and modification time: equal before and after a refused
    command means it wrote nothing."""
    out = {}
    for d in dirs:
        for base, _, files in os.walk(d):
            out[base] = None
            for f in files:
                st = os.stat(os.path.join(base, f))
                out[os.path.join(base, f)] = (st.st_size, st.st_mtime_ns)
    return out

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


def killed_after_first_save(monkeypatch, train, args) -> list:
    """Run ``train(args)`` and stop it with a KeyboardInterrupt right after its first checkpoint is written, as a
    killed job; returns the steps saved (one). The run folder is then ready for ``--resume``."""
    import pytest

    from envs import runs
    saves, original = [], runs.Run.save

    def crash_after_first_save(self, step, *a, **kw):
        saves.append(step)
        original(self, step, *a, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(runs.Run, "save", crash_after_first_save)
    with pytest.raises(KeyboardInterrupt):
        train(args)
    monkeypatch.setattr(runs.Run, "save", original)
    return saves

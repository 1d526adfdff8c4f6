"""The authors' shipped per-seed evaluation curves, as tidy CSVs under results/reference/curves/.

`python -m reproduce.authors_curves [AUTHORS_DIR]` (default ../shared/authors beside the checkout)
reads only AUTHORS_DIR and writes, for the Gym envs the grids run:

- mrq_gym.csv from MRQ/results/gym_results.txt (github.com/facebookresearch/MRQ @ 8a44a7d): blocks
  "Env: Gym-<id>", a row per evaluation step, a column per seed;
- drq_gym.csv from DR.Q/results/drq.csv (github.com/dmksjfl/DR.Q @ cc307a5): one row per (env_name,
  seed, env_step), Gym envs named <Name>_v4;
- td3_gym_v1.csv from TD3/learning_curves/<Env>/TD3_<id>-v1_<seed>.npy (github.com/sfujim/TD3 @ 34770cc):
  one evaluation per 5,000 steps from step 0 (the repo's main.py evaluates at the start and every
  eval_freq = 5e3; the files carry no steps);

each with columns source_algo, env, seed, step, return (the shipped text of each number; TD3's float64
values with 5 decimals, as MR.Q's file prints them),
and index.csv (file, source_algo, repo, commit, shipped, seeds, note) naming the source of each. These
are published figures; reproduce.summarize reads only the committed CSVs.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
import sys

from reproduce.grid import ROOT, write_if_changed

OUT_DIR = os.path.join(ROOT, "results", "reference", "curves")
AUTHORS_DIR = os.path.join(os.path.dirname(ROOT), "shared", "authors")
HEADER = ["source_algo", "env", "seed", "step", "return"]
INDEX_HEADER = ["file", "source_algo", "repo", "commit", "shipped", "seeds", "note"]
TD3_EVAL_FREQ = 5_000  # TD3's main.py: an evaluation at step 0, then every eval_freq steps
# (csv name, source_algo, repo, commit, shipped file or folder under AUTHORS_DIR, note)
SOURCES = [
    ("mrq_gym.csv", "mrq", "github.com/facebookresearch/MRQ", "8a44a7d", "MRQ/results/gym_results.txt",
     "Gym -v4, evaluation every 5k env steps"),
    ("drq_gym.csv", "drq", "github.com/dmksjfl/DR.Q", "cc307a5", "DR.Q/results/drq.csv",
     "Gym -v4 rows (env_name <Name>_v4, metric avg_return), evaluation every 25k env steps; seeds as the file names them"),
    ("td3_gym_v1.csv", "td3", "github.com/sfujim/TD3", "34770cc", "TD3/learning_curves",
     "gym -v1 envs (the paper's runs); steps inferred as index x 5,000 (main.py's eval_freq); returns with 5 decimals"),
]


class CurveError(ValueError):
    """A shipped file that does not read as expected."""


def parse_mrq(text: str, algo: str = "mrq") -> list[tuple]:
    """Rows (algo, env, seed, step, return) of an MR.Q results file's "Env: Gym-<id>" blocks (other suites'
    blocks, "Env: <suite>-...", are skipped); returns stay the file's text."""
    rows, env, seeds = [], None, None
    for n, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts or set(line.strip()) == {"-"}:
            continue
        if line.startswith("Env:"):
            name = line[len("Env:"):].strip()
            env, seeds = (name[len("Gym-"):], None) if name.startswith("Gym-") else (None, None)
        elif parts[0] == "Timestep":
            seeds = [int(s) for s in re.findall(r"Seed (\d+)", line)]
        elif env is not None:
            if seeds is None or len(parts) != len(seeds) + 1:
                raise CurveError(f"line {n}: {len(parts)} fields, expected a step and {len(seeds or [])} seeds")
            for seed, value in zip(seeds, parts[1:]):
                float(value)  # a number, kept as written
                rows.append((algo, env, seed, int(float(parts[0])), value))
    return rows


def parse_drq(text: str, algo: str = "drq") -> list[tuple]:
    """Rows of DR.Q's results csv for its Gym envs (env_name <Name>_v<k> -> <Name>-v<k>), metric avg_return."""
    reader = csv.DictReader(io.StringIO(text))
    missing = {"env_name", "seed", "metric", "env_step", "value"} - set(reader.fieldnames or [])
    if missing:
        raise CurveError(f"no column {', '.join(sorted(missing))}")
    rows = []
    for row in reader:
        m = re.fullmatch(r"([A-Z]\w*?)_v(\d+)", row["env_name"])
        if m and row["metric"] == "avg_return":
            float(row["value"])
            rows.append((algo, f"{m[1]}-v{m[2]}", int(row["seed"]), int(float(row["env_step"])), row["value"]))
    return rows


def parse_td3_folder(folder: str, algo: str = "td3") -> list[tuple]:
    """Rows of TD3's learning_curves/<Env>/TD3_<id>_<seed>.npy: evaluation i at step i x TD3_EVAL_FREQ."""
    import numpy as np
    rows = []
    for sub in sorted(os.listdir(folder)):
        if not os.path.isdir(os.path.join(folder, sub)):
            continue
        for name in sorted(os.listdir(os.path.join(folder, sub))):
            m = re.fullmatch(r"TD3_(.+-v\d+)_(\d+)\.npy", name)
            if not m:
                continue
            try:
                values = np.load(os.path.join(folder, sub, name), allow_pickle=False).ravel()
            except (ValueError, OSError, EOFError) as e:  # EOFError: a file cut short
                raise CurveError(f"{sub}/{name}: {e}") from None
            rows += [(algo, m[1], int(m[2]), i * TD3_EVAL_FREQ, f"{float(v):.5f}") for i, v in enumerate(values)]
    return rows


def tidy_csv(rows: list[tuple]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER)
    w.writerows(sorted(rows, key=lambda r: (r[1], r[2], r[3])))
    return buf.getvalue()


def convert(authors_dir: str, out_dir: str = OUT_DIR) -> dict[str, int]:
    """Write every tidy CSV and index.csv, once every source has read; {csv name: rows}. A source that does not
    read or an output that cannot be written is a CurveError naming the file."""
    counts, index, outputs = {}, [], {}
    for name, algo, repo, commit, shipped, note in SOURCES:
        path = os.path.join(authors_dir, *shipped.split("/"))
        if not os.path.exists(path):
            raise CurveError(f"{path} does not exist (is {authors_dir} the authors' folder?)")
        try:
            if algo == "td3":
                rows = parse_td3_folder(path, algo)
            else:
                with open(path) as f:
                    rows = (parse_mrq if algo == "mrq" else parse_drq)(f.read(), algo)
        except (ValueError, OSError) as e:  # CurveError is a ValueError
            raise CurveError(f"{path}: {e}") from None
        if not rows:
            raise CurveError(f"{path}: no Gym rows")
        outputs[name] = tidy_csv(rows)
        counts[name] = len(rows)
        index.append([name, algo, repo, commit, shipped, len({r[2] for r in rows}), note])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(INDEX_HEADER)
    w.writerows(index)
    outputs["index.csv"] = buf.getvalue()
    for name, text in outputs.items():  # only once every source has read
        try:
            write_if_changed(os.path.join(out_dir, name), text)
        except OSError as e:
            raise CurveError(f"cannot write {os.path.join(out_dir, name)}: {e}") from None
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("authors_dir", nargs="?", default=AUTHORS_DIR, help="the authors' folder (default %(default)s)")
    p.add_argument("--out", default=OUT_DIR, help="output folder (default %(default)s)")
    a = p.parse_args(argv)
    try:
        counts = convert(a.authors_dir, a.out)
    except CurveError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, n in counts.items():
        print(f"[authors_curves] {n:,} rows -> {os.path.join(a.out, name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

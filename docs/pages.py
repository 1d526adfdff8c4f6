"""Keep the generated blocks of the algorithm pages, docs/algos/<name>.md, in sync with their sources.

Each page is hand-written except its blocks between `<!-- generated: NAME -->` and `<!-- end generated -->`:

- header: the algorithm file's header docstring, verbatim;
- parity: the rows of results/parity.md whose first column is the file;
- bench:  the results/bench/*.md that concern the file (title, command, its rows, a link);
- curves: the quick-grid plots (results/plots/quick/<grid>.png of every reproduce/grids/<grid>.toml whose
          [scale.quick] algos list it), its committed quick runs (results/runs/reproduce-quick/<name>/*/eval.csv)
          and its quick rows of results/summary.csv.

Usage:
    python docs/pages.py            # rewrite the blocks (a page missing for an algos/*.py file is created)
    python docs/pages.py --check    # exit 1 naming every stale block, missing page or page without a file
    python docs/pages.py td3 td7    # only these pages (a name without an algos/<name>.py: exit 2)

Output depends only on the files above (sorted, no timestamps), so it is the same on every machine.
"""

from __future__ import annotations

import argparse
import ast
import csv
import glob
import os
import re
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = "docs/algos"
BLOCKS = ("header", "parity", "bench", "curves")
START = "<!-- generated: {} -->"
END = "<!-- end generated -->"
BLOCK_RE = re.compile(r"<!-- generated: ([\w-]+) -->\n(.*?)<!-- end generated -->", re.S)
UP = "../.."  # from docs/algos/<name>.md to the repository root
# What the blocks are generated from (globs relative to the root); tests copy these to try the generator.
INPUTS = ("algos/*.py", "results/parity.md", "results/bench/*.md", "results/summary.csv",
          "results/plots/quick/*.png", "reproduce/grids/*.toml", "results/runs/reproduce-quick/*/*/eval.csv")
BENCH_ROWS = 12  # table rows shown per bench file; the rest are behind its link


class UserError(Exception):
    """Bad input: printed as one line, exit status 2."""


def _read(root: str, rel: str) -> str:
    with open(os.path.join(root, rel), encoding="utf-8") as f:
        return f.read()


def algo_names(root: str = ROOT) -> list[str]:
    """Stems of algos/*.py, the files that each have a page."""
    paths = glob.glob(os.path.join(root, "algos", "*.py"))
    return sorted(os.path.basename(p)[:-3] for p in paths if not p.endswith("__init__.py"))


def page_names(root: str = ROOT) -> list[str]:
    return sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(root, PAGES, "*.md")))


def _count(n, noun: str) -> str:
    """'1 seed', '5 seeds' ('? seeds' when n is unknown); noun's last word takes the plural."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _fence(text: str, info: str = "text") -> str:
    ticks = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", text)), default=0))
    return f"{ticks}{info}\n{text}\n{ticks}\n"


def _token(name: str) -> re.Pattern:
    """`name` as a word of its own: td3 in 'algos/td3.py' or '| td3 |', not in 'td3_bc' or 'fujimoto-td3'."""
    return re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])")


def _md_tables(text: str) -> list[list[str]]:
    tables, cur = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cur.append(line)
        elif cur:
            if len(cur) >= 2:
                tables.append(cur)
            cur = []
    return tables


# ---------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------
def header_block(root: str, name: str) -> str:
    rel = f"algos/{name}.py"
    try:
        doc = ast.get_docstring(ast.parse(_read(root, rel)))
    except SyntaxError as e:
        raise UserError(f"{rel} does not parse: {e.msg} (line {e.lineno})") from None
    if not doc:
        raise UserError(f"{rel} has no header docstring")
    return (f"The header docstring of [`algos/{name}.py`]({UP}/{rel}), verbatim: paper, the authors' code it "
            f"follows, and every deviation.\n\n" + _fence(doc))


def parity_block(root: str, name: str) -> str:
    rel = "results/parity.md"
    link = f"[`{rel}`]({UP}/{rel})"
    if not os.path.exists(os.path.join(root, rel)):
        return f"No {link} yet (`make parity` writes it).\n"
    for table in _md_tables(_read(root, rel)):
        if table[0].split("|")[1].strip() != "file":
            continue
        rows = [r for r in table[2:] if r.split("|")[1].strip() == f"{name}.py"]
        if rows:
            return (f"The rows of {link} for `{name}.py`, written by `make parity`: the authors' code and this file "
                    f"side by side in float64; *worst* is the largest relative difference seen, a row passes at "
                    f"or below *tol*.\n\n" + "\n".join(table[:2] + rows) + "\n")
    return f"{link} has no row for `{name}.py`.\n"


def _bench_owner(stem: str, names: list[str]) -> str | None:
    """The algorithm a bench file is named for: the longest name that prefixes its stem (td3_bc_sparse_cpu)."""
    owners = [n for n in names if stem == n or stem.startswith(n + "_")]
    return max(owners, key=len) if owners else None


def bench_block(root: str, name: str) -> str:
    names = algo_names(root)
    token = _token(name)
    parts = []
    for path in sorted(glob.glob(os.path.join(root, "results", "bench", "*.md"))):
        stem = os.path.basename(path)[:-3]
        text = _read(root, os.path.relpath(path, root))
        owned = _bench_owner(stem, names) == name
        if not owned and not token.search(text):
            continue
        rel = f"results/bench/{stem}.md"
        title = next((l[2:].strip() for l in text.splitlines() if l.startswith("# ")), stem)
        command = next(iter(re.findall(r"`(python3? [^`]+)`", text) + re.findall(r"`(make [^`]+)`", text)), None)
        part = [f"**[{title}]({UP}/{rel})**", ""]
        if command:
            part += [f"Command: `{command}`", ""]
        for table in _md_tables(text):
            rows = [r for r in table[2:] if token.search(r)]
            if not rows and owned:
                rows = table[2:]
            if rows:
                shown = rows[:BENCH_ROWS]
                part += table[:2] + shown
                if len(rows) > len(shown):
                    part += ["", f"({_count(len(rows) - len(shown), 'more row')} in the file.)"]
                part.append("")
        parts.append("\n".join(part).rstrip() + "\n")
    if not parts:
        return f"No file in `results/bench/` concerns `{name}.py` yet.\n"
    return ("Benchmarks from `results/bench/` that concern this file (each names its command, "
            "machine and commit; the rows shown are this file's).\n\n" + "\n".join(parts))


def _fmt(value: str) -> str:
    try:
        x = float(value)
    except ValueError:
        return value
    return f"{x:,.0f}" if x == int(x) and abs(x) >= 1000 else f"{x:.4g}" if abs(x) < 10 else f"{x:.1f}"


def _quick_grids(root: str, name: str) -> list[tuple[str, dict]]:
    out = []
    for path in sorted(glob.glob(os.path.join(root, "reproduce", "grids", "*.toml"))):
        try:
            with open(path, "rb") as f:
                quick = tomllib.load(f).get("scale", {}).get("quick", {})
        except tomllib.TOMLDecodeError as e:
            raise UserError(f"{os.path.relpath(path, root)} is not valid TOML: {e}") from None
        if name in quick.get("algos", []):
            out.append((os.path.basename(path)[:-5], quick))
    return out


def _runs_table(root: str, name: str) -> list[str]:
    rows = []
    for path in sorted(glob.glob(os.path.join(root, "results", "runs", "reproduce-quick", name, "*", "eval.csv"))):
        with open(path, newline="", encoding="utf-8") as f:
            evals = list(csv.DictReader(f))
        if not evals:
            continue
        last = max(int(r["step"]) for r in evals)
        at = [r for r in evals if int(r["step"]) == last]
        extra = []
        for col in ("success", "normalized_score", "truth"):
            vals = [float(r[col]) for r in at if r.get(col) not in (None, "")]
            if vals:
                extra.append(f"{col} {_fmt(str(sum(vals) / len(vals)))}")
        ret = [float(r["return"]) for r in at]
        run = os.path.relpath(os.path.dirname(path), root)
        rows.append(f"| `{run}` | {at[0]['env']} | {last:,} | {len(at)} | {sum(ret) / len(ret):.1f} "
                    f"[{min(ret):.1f}, {max(ret):.1f}] | {'; '.join(extra)} |")
    if not rows:
        return []
    return (["| run | env | last step | seeds | `return` at the last step: mean [min, max] over seeds | also |",
             "|---|---|---|---|---|---|"] + rows)


def _summary_table(root: str, name: str) -> list[str]:
    rel = "results/summary.csv"
    if not os.path.exists(os.path.join(root, rel)):
        return []
    with open(os.path.join(root, rel), newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r.get("scale") == "quick" and r.get("algo") == name]
    out = []
    for r in rows:
        ours = _fmt(r.get("ours_mean") or "") or "—"
        if r.get("ours_lo") and r.get("ours_hi"):
            ours += f" [{_fmt(r['ours_lo'])}, {_fmt(r['ours_hi'])}]"
        ref = _fmt(r.get("reference_mean") or "") or "—"
        if r.get("reference_lo") and r.get("reference_hi"):
            ref += f" [{_fmt(r['reference_lo'])}, {_fmt(r['reference_hi'])}]"
        env = r.get("env", "")
        if r.get("reference_env") and r["reference_env"] != env:
            env += f" / {r['reference_env']}"
        stat = (r.get("statistic") or "").replace("_", " ").replace("authors seeds", "the authors' seeds")
        out.append(f"| {env} | {_fmt(r.get('budget') or '')} | {stat} | {ours} | {r.get('seeds', '')} | {ref} | "
                   f"{(r.get('verdict') or '').replace('|', '/')} |")
    if not out:
        return []
    return (["| env (ours / reference) | budget | statistic | ours | seeds | reference | verdict |",
             "|---|---|---|---|---|---|---|"] + out)


def curves_block(root: str, name: str) -> str:
    parts = []
    for grid, quick in _quick_grids(root, name):
        png = f"results/plots/quick/{grid}.png"
        budgets = quick.get("budgets", [])
        what = (f"`reproduce/grids/{grid}.toml`, `[scale.quick]`: {', '.join(quick.get('algos', []))} on "
                f"{', '.join(quick.get('envs', []))}, {_count(quick.get('seeds', '?'), 'seed')}, "
                f"{'budget' if len(budgets) == 1 else 'budgets'} {', '.join(f'{b:,}' for b in budgets)}")
        if os.path.exists(os.path.join(root, png)):
            parts.append(f"![{grid} quick grid]({UP}/{png})\n\n*{what}.*\n")
        else:
            parts.append(f"No plot of the `{grid}` quick grid yet ({what}; `make summary` draws it).\n")
    runs = _runs_table(root, name)
    if runs:
        parts.append("Our committed quick runs (`make reproduce-quick`), read from their `eval.csv`:\n\n"
                     + "\n".join(runs) + "\n")
    summary = _summary_table(root, name)
    if summary:
        parts.append(f"Its quick-grid rows of [`results/summary.csv`]({UP}/results/summary.csv) (written by "
                     f"`make summary`; how to read them: [`results/SUMMARY.md`]({UP}/results/SUMMARY.md)):\n\n"
                     + "\n".join(summary) + "\n")
    if not parts:
        return f"No quick grid runs `{name}` (`reproduce/grids/*.toml`).\n"
    return "\n".join(parts)


GENERATORS = {"header": header_block, "parity": parity_block, "bench": bench_block, "curves": curves_block}


# ---------------------------------------------------------------------------------------------
# Pages
# ---------------------------------------------------------------------------------------------
def render(text: str, root: str, name: str) -> tuple[str, list[str]]:
    """The page with every block regenerated, and the blocks it lacks."""
    found = []

    def sub(m: re.Match) -> str:
        block = m.group(1)
        if block not in GENERATORS:
            raise UserError(f"{PAGES}/{name}.md: unknown generated block '{block}' (known: {', '.join(BLOCKS)})")
        found.append(block)
        return START.format(block) + "\n" + GENERATORS[block](root, name) + END

    new = BLOCK_RE.sub(sub, text)
    return new, [b for b in BLOCKS if b not in found]


def skeleton(name: str) -> str:
    """A new page: the title and every block, for the hand-written parts to be filled in."""
    body = "\n".join(f"## {title}\n\n{START.format(b)}\n{END}\n" for b, title in zip(
        BLOCKS, ("Deviations and notes (from the file's header)", "Parity with the authors' code", "Benchmarks",
                 "Learning curves")))
    return f"# {name}\n\n`python algos/{name}.py --help` lists every flag.\n\n{body}"


def stale(root: str = ROOT, names: list[str] | None = None) -> list[str]:
    """What --check reports: 'page: block' for each stale block, plus missing pages and pages without a file."""
    algos, pages = algo_names(root), page_names(root)
    problems = []
    for name in names or sorted(set(algos) | set(pages)):
        rel = f"{PAGES}/{name}.md"
        if name not in algos:
            problems.append(f"{rel}: no algos/{name}.py")
            continue
        if name not in pages:
            problems.append(f"{rel}: missing")
            continue
        text = _read(root, rel)
        new, missing = render(text, root, name)
        problems += [f"{rel}: no '{b}' block" for b in missing]
        have = dict(BLOCK_RE.findall(text))
        problems += [f"{rel}: {b}" for b, body in BLOCK_RE.findall(new) if have.get(b) != body]
    return problems


def write(root: str = ROOT, names: list[str] | None = None) -> list[str]:
    """Rewrite the blocks (and create missing pages); returns the pages written."""
    written = []
    algos = algo_names(root)
    for name in names or algos:
        rel = os.path.join(root, PAGES, f"{name}.md")
        text = _read(root, os.path.relpath(rel, root)) if os.path.exists(rel) else skeleton(name)
        new, _ = render(text, root, name)
        if not os.path.exists(rel) or new != text:
            os.makedirs(os.path.dirname(rel), exist_ok=True)
            with open(rel, "w", encoding="utf-8") as f:
                f.write(new)
            written.append(f"{PAGES}/{name}.md")
    return written


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit status 2
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    p = _Parser(description="Rewrite (or --check) the generated blocks of docs/algos/*.md.")
    p.add_argument("names", nargs="*", help="pages to process (default: every algos/*.py)")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 naming every stale block")
    p.add_argument("--root", default=ROOT, help="repository root (default: this checkout)")
    args = p.parse_args(argv)
    try:
        if not os.path.isdir(os.path.join(args.root, "algos")):
            raise UserError(f"--root {args.root} has no algos/ folder")
        unknown = sorted(set(args.names) - set(algo_names(args.root)))
        if unknown:
            raise UserError(f"no algos/<name>.py for: {', '.join(unknown)}")
        if args.check:
            problems = stale(args.root, args.names or None)
            for line in problems:
                print(f"stale: {line}")
            if problems:
                print(f"{len(problems)} stale; run: python docs/pages.py", file=sys.stderr)
                return 1
            print(f"{_count(len(args.names) or len(algo_names(args.root)), 'page')} up to date")
            return 0
        for rel in write(args.root, args.names or None):
            print(f"wrote {rel}")
        orphans = sorted(set(page_names(args.root)) - set(algo_names(args.root)))
        for name in orphans:
            print(f"stale: {PAGES}/{name}.md: no algos/{name}.py", file=sys.stderr)
        return 1 if orphans else 0
    except (UserError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

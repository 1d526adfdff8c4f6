"""The parity harness: the authors' code (imported at run time, never copied) beside ours, in float64.

- `authors_dir()` / `load_authors(repo, module)`: import an author's module from AUTHORS_DIR/<repo>, fresh, so
  that same-named modules of different repositories (utils, TD3, DDPG, ...) never mix.
- `linear`, `conv`, `layernorm`, `embedding`: one converter from torch layers to flax parameter dicts (torch
  [out, in] against flax [in, out]; conv [out, in, kh, kw] against [kh, kw, in, out]). A getter maps each torch
  parameter to the tensor to convert, so the same call converts Adam's moments (`adam_moment`).
- `Parity`: the largest relative difference of every compared piece over the iterations, recorded for
  results/parity.md and asserted against the tolerance at the end.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
TOL = 1e-9  # float64: a real difference (a constant, an order, a missing term) is orders of magnitude above this
FRAGMENTS_ENV = "FUJIMOTO_PARITY_FRAGMENTS"  # this session's fragment folder (conftest sets it; xdist workers inherit it)


def fragments_dir() -> Path:
    return Path(os.environ.get(FRAGMENTS_ENV) or ROOT / "build" / "parity" / "default")

REPOS = {  # folder -> (upstream, commit); docs/parity.md lists them for users who clone their own copies
    "TD3": ("github.com/sfujim/TD3", "34770ccdcb51df6f6c7d85c1ba7e40d71b940d16"),
    "TD3_BC": ("github.com/sfujim/TD3_BC", "8791ad7d7656cb8396f1b3ac8c37f170b2a2dd5f"),
    "BCQ": ("github.com/sfujim/BCQ", "4876f7e"),
    "LAP-PAL": ("github.com/sfujim/LAP-PAL", "a649b1b"),
    "SR-DICE": ("github.com/sfujim/SR-DICE", "7c71d88"),
    "TD7": ("github.com/sfujim/TD7", "c1c280d"),
    "MRQ": ("github.com/facebookresearch/MRQ", "8a44a7d"),
    "DR.Q": ("github.com/dmksjfl/DR.Q", "cc307a5"),
    "driftql": ("github.com/DT6A/driftql", "1ad1bbc"),
    "OOPS": ("github.com/weidi-chang/OOPS", "d73f51c"),
}


def authors_dir() -> Path | None:
    """AUTHORS_DIR, else ../shared/authors beside the checkout when it exists."""
    env = os.environ.get("AUTHORS_DIR")
    if env:
        return Path(env).expanduser().resolve()
    default = ROOT.parent / "shared" / "authors"
    return default if default.is_dir() else None


def missing_reason(repo: str) -> str | None:
    """None when AUTHORS_DIR/<repo> is there, else the one line a skip prints."""
    root = authors_dir()
    upstream, commit = REPOS[repo]
    if root is None:
        return (f"no authors' code: set AUTHORS_DIR to a folder holding {repo}/ ({upstream} @ {commit}); "
                "docs/parity.md lists every repository and commit")
    if not (root / repo).is_dir():
        return f"AUTHORS_DIR={root} has no {repo}/: clone {upstream} there at {commit}"
    return None


def gym_stub() -> types.ModuleType:
    """An empty `gym` module: the authors' buffers and utils import old gym at module level but never use it."""
    mod = types.ModuleType("gym")
    mod.Wrapper = mod.ObservationWrapper = mod.ActionWrapper = mod.RewardWrapper = object
    mod.spaces = types.SimpleNamespace(Box=object, Discrete=object)
    mod.make = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("old gym is stubbed in the parity tests"))
    return mod


@contextlib.contextmanager
def _isolated_path(folder: Path, stubs: dict | None):
    saved_path, saved_mods = list(sys.path), dict(sys.modules)
    sys.path.insert(0, str(folder))
    for name, mod in (stubs or {}).items():
        sys.modules[name] = mod
    try:
        yield
    finally:
        sys.path[:] = saved_path
        # Drop every module that came from an authors' folder (or a stub), so the next repo's `utils` is its own.
        for name in list(sys.modules):
            if name not in saved_mods or sys.modules[name] is not saved_mods[name]:
                mod = sys.modules[name]
                f = getattr(mod, "__file__", None) or ""
                if name in (stubs or {}) or f.startswith(str(folder)):
                    del sys.modules[name]
                    if name in saved_mods:
                        sys.modules[name] = saved_mods[name]


def load_authors(repo: str, *modules: str, subdir: str = "", stubs: dict | None = None):
    """Import `modules` from AUTHORS_DIR/<repo>/<subdir>, fresh. Returns one module or a tuple of them.
    `stubs` maps module names to stand-ins (e.g. {"gym": gym_stub()}) while the import runs."""
    folder = authors_dir() / repo / subdir
    with _isolated_path(folder, stubs):
        for m in modules:
            sys.modules.pop(m, None)
        out = tuple(importlib.import_module(m) for m in modules)
    return out[0] if len(out) == 1 else out


def ours(name: str):
    """algos/<name>.py as a module (the file's own code, never a re-typed copy)."""
    return importlib.import_module(f"algos.{name}")


# ---------------------------------------------------------------- torch -> flax converter

def _np(t) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def param(p):
    """The default getter: the parameter itself."""
    return p


def td3_iteration(th, agent, learner, data, stub, update_actor, batch: int, size: int, action_dim: int):
    """One TD3 update on both sides: the authors' ``th.train`` is fed our sampled indices (``stub``) and our target
    noise (torch.randn_like patched), both drawn from our learner's key as its update draws them."""
    import torch
    _, k_idx, k_noise = jax.random.split(learner.key[0], 3)
    stub.idx = jax.random.randint(k_idx, (batch,), 0, size)
    noise = jax.random.normal(k_noise, (batch, action_dim))
    orig = torch.randn_like
    torch.randn_like = lambda x, **kw: t64(noise)
    try:
        th.train(stub, batch)
    finally:
        torch.randn_like = orig
    learner, m = agent.update(learner, stack(data), size, update_actor)
    np.testing.assert_array_equal(np.asarray(m["idx"][0]), np.asarray(stub.idx))
    return learner


def optax_adam(opt_state):
    """(mu, nu, count) of an optax.adam state."""
    s = opt_state[0]
    return s.mu, s.nu, s.count


def td3_state_rel(s, th, it: int, policy_freq: int = 2) -> dict:
    """Relative differences of an unstacked TD3-shaped learner from the authors' TD3 object ``th`` after ``it``
    iterations (the actor every policy_freq-th): both networks and targets, both Adam moments, the step counts."""
    mu_c, nu_c, n_c = optax_adam(s.critic_opt)
    mu_a, nu_a, n_a = optax_adam(s.actor_opt)
    c_opt, a_opt = th.critic_optimizer, th.actor_optimizer
    return dict(critic=tree_rel(s.critic, td3_critic(th.critic)),
                critic_target=tree_rel(s.critic_target, td3_critic(th.critic_target)),
                actor=tree_rel(s.actor, td3_actor(th.actor)),
                actor_target=tree_rel(s.actor_target, td3_actor(th.actor_target)),
                critic_adam=max(tree_rel(mu_c, td3_critic(th.critic, adam_moment(c_opt, "exp_avg"))),
                                tree_rel(nu_c, td3_critic(th.critic, adam_moment(c_opt, "exp_avg_sq")))),
                actor_adam=max(tree_rel(mu_a, td3_actor(th.actor, adam_moment(a_opt, "exp_avg"))),
                               tree_rel(nu_a, td3_actor(th.actor, adam_moment(a_opt, "exp_avg_sq")))),
                adam_steps=abs(int(n_c) - it) + abs(int(n_a) - it // policy_freq))


def adam_moment(optimizer, which: str):
    """Getter for Adam's first ("exp_avg") or second ("exp_avg_sq") moment of each parameter; zeros before the
    first step, as optax starts."""
    import torch

    def get(p):
        state = optimizer.state.get(p, {})
        return state[which] if which in state else torch.zeros_like(p)
    return get


def linear(layer, g=param, bias: bool = True) -> dict:
    """torch nn.Linear -> flax Dense: kernel [in, out]."""
    out = {"kernel": jnp.asarray(_np(g(layer.weight)).T)}
    if bias and layer.bias is not None:
        out["bias"] = jnp.asarray(_np(g(layer.bias)))
    return out


def conv(layer, g=param) -> dict:
    """torch nn.Conv2d [out, in, kh, kw] -> flax Conv [kh, kw, in, out]."""
    out = {"kernel": jnp.asarray(_np(g(layer.weight)).transpose(2, 3, 1, 0))}
    if layer.bias is not None:
        out["bias"] = jnp.asarray(_np(g(layer.bias)))
    return out


def conv_transpose(layer, g=param) -> dict:
    """torch nn.ConvTranspose2d [in, out, kh, kw] -> flax ConvTranspose(transpose_kernel=True) [kh, kw, out, in]."""
    out = {"kernel": jnp.asarray(_np(g(layer.weight)).transpose(2, 3, 1, 0))}
    if layer.bias is not None:
        out["bias"] = jnp.asarray(_np(g(layer.bias)))
    return out


def layernorm(layer, g=param) -> dict:
    """torch nn.LayerNorm -> flax LayerNorm: weight is flax's scale."""
    out = {}
    if layer.weight is not None:
        out["scale"] = jnp.asarray(_np(g(layer.weight)))
    if layer.bias is not None:
        out["bias"] = jnp.asarray(_np(g(layer.bias)))
    return out


def embedding(layer, g=param) -> dict:
    """torch nn.Embedding [num, dim] -> flax Embed: the same table."""
    return {"embedding": jnp.asarray(_np(g(layer.weight)))}


def mlp(net, names, g=None) -> dict:
    """Flax `Linear_<i>` entries from the torch layers `names` of `net`, in order."""
    return {f"Linear_{i}": linear(getattr(net, n), g or param) for i, n in enumerate(names)}


def td3_actor(a, g=None) -> dict:
    """The TD3-repo actor layout (l1, l2, l3), shared by TD3, TD3_BC and OurDDPG."""
    return {"params": mlp(a, ("l1", "l2", "l3"), g)}


def td3_critic(c, g=None) -> dict:
    """The TD3-repo twin critic layout (l1-l3 for Q1, l4-l6 for Q2), as flax `q1` / `q2`."""
    return {"params": {"q1": mlp(c, ("l1", "l2", "l3"), g), "q2": mlp(c, ("l4", "l5", "l6"), g)}}


def t64(x):
    """A JAX/NumPy array as a float64 torch tensor (ints stay ints)."""
    import torch
    a = np.asarray(x)
    return torch.tensor(a, dtype=torch.float64 if a.dtype.kind == "f" else None)


# ---------------------------------------------------------------- shared test plumbing

@contextlib.contextmanager
def patched(*triples):
    """Set (owner, name, value) attributes for the block, restoring them in `finally`."""
    saved = [(o, n, getattr(o, n)) for o, n, _ in triples]
    try:
        for o, n, v in triples:
            setattr(o, n, v)
        yield
    finally:
        for o, n, v in saved:
            setattr(o, n, v)


def random_buffer(mod, size: int, obs_dim: int, act_dim: int, seed: int = 1):
    """`mod.Buffer(obs, action, reward, next_obs, terminated)` of random float64 transitions, 10% terminal."""
    rng = np.random.default_rng(seed)
    return mod.Buffer(jnp.asarray(rng.normal(size=(size, obs_dim))), jnp.asarray(rng.uniform(-1, 1, (size, act_dim))),
                      jnp.asarray(rng.normal(size=size)), jnp.asarray(rng.normal(size=(size, obs_dim))),
                      jnp.asarray((rng.uniform(size=size) < 0.1).astype(np.float64)))


class StubBuffer:
    """The authors' ReplayBuffer.sample (TD3, OurDDPG, TD3_BC, BCQ layout), returning our batch at `idx`."""

    def __init__(self, data):
        self.data, self.idx = jax.device_get(data), None

    def sample(self, batch_size):
        assert batch_size == len(self.idx)
        i = np.asarray(self.idx)
        t = lambda x: t64(np.asarray(x)[i])  # noqa: E731
        d = self.data
        return t(d.obs), t(d.action), t(d.next_obs), t(d.reward)[:, None], 1 - t(d.terminated)[:, None]


def argparse_defaults(path) -> dict:
    """`--name: default` of every parser.add_argument(...) call in an authors' script, read with ast (never run)."""
    import ast
    out = {}
    for node in ast.walk(ast.parse(Path(path).read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            for kw in node.keywords:
                if kw.arg == "default":
                    try:
                        out[node.args[0].value] = ast.literal_eval(kw.value)
                    except ValueError:
                        pass  # a default computed at run time
    return out


# ---------------------------------------------------------------- comparison and report

def rel(ours_x, theirs_x) -> float:
    """max |ours - theirs| / max |theirs| (absolute below 1e-12 of scale)."""
    a, b = np.asarray(ours_x, np.float64), np.asarray(theirs_x, np.float64)
    if a.shape != b.shape:
        raise AssertionError(f"shape {a.shape} (ours) != {b.shape} (theirs)")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(1e-12, float(np.max(np.abs(b)))))


def tree_rel(ours_tree, theirs_tree) -> float:
    """The largest `rel` over two pytrees of the same structure (a structure mismatch fails loudly)."""
    s1, s2 = jax.tree.structure(ours_tree), jax.tree.structure(theirs_tree)
    if s1 != s2:
        raise AssertionError(f"parameter trees differ:\n ours   {s1}\n theirs {s2}")
    return max([rel(a, b) for a, b in zip(jax.tree.leaves(ours_tree), jax.tree.leaves(theirs_tree))] or [0.0])


def unstack(tree, i: int = 0):
    """Seed i of a seed-stacked pytree, as host arrays (slicing on the device would compile per leaf shape)."""
    return jax.tree.map(lambda x: np.asarray(x)[i], tree)


def stack(tree):
    """A one-seed pytree with a leading seed axis."""
    return jax.tree.map(lambda x: jnp.asarray(x)[None], tree)


class Parity:
    """Collects the largest relative difference of each piece over the iterations.

        p = Parity("td3.py", "update (Gym)", tol=1e-9)
        for it in ...:
            p.check(critic=tree_rel(...), actor=..., it=it)
        p.finish()   # records the row for results/parity.md, then asserts every piece <= tol
    """

    def __init__(self, file: str, piece: str, tol: float = TOL):
        self.file, self.piece, self.tol = file, piece, tol
        self.worst: dict[str, float] = {}
        self.first_bad: dict[str, int] = {}
        self.iterations = 0

    def check(self, it: int | None = None, **diffs: float) -> None:
        if it is not None:
            self.iterations = max(self.iterations, it)
        for k, v in diffs.items():
            v = float(v)
            if not np.isfinite(v):
                v = float("inf")
            self.worst[k] = max(self.worst.get(k, 0.0), v)
            if v > self.tol and k not in self.first_bad:
                self.first_bad[k] = it if it is not None else -1

    def finish(self, iterations: int | None = None, note: str = "") -> None:
        if iterations is not None:
            self.iterations = iterations
        worst = max(self.worst.values()) if self.worst else 0.0
        record(self.file, self.piece, sorted(self.worst), self.iterations, worst, self.tol, note)
        bad = {k: (v, self.first_bad.get(k)) for k, v in self.worst.items() if v > self.tol}
        assert not bad, f"{self.file} {self.piece}: above {self.tol:g}: " + ", ".join(
            f"{k} {v:.3e} (first at iteration {i})" for k, (v, i) in bad.items())


def record(file: str, piece: str, compared, iterations: int, worst: float, tol: float, note: str = "") -> None:
    """One row of results/parity.md, written as a fragment the session end collects (works under xdist)."""
    folder = fragments_dir()
    folder.mkdir(parents=True, exist_ok=True)
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
    row = dict(test=test, file=file, piece=piece, compared=list(compared), iterations=int(iterations), worst=float(worst),
               tol=float(tol), note=note)
    name = "".join(c if c.isalnum() else "_" for c in f"{file}__{piece}")[:150]
    (folder / f"{name}.json").write_text(json.dumps(row))

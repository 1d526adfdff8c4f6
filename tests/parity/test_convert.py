"""The torch -> flax converter every parity test uses, against torch's own forward pass (an oracle independent of
the converter's reading): Linear, Conv2d (stride, padding), ConvTranspose2d, LayerNorm, Embedding, and the Adam
moment getter."""

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import torch

from tests.parity.harness import (adam_moment, conv, conv_transpose, embedding, layernorm, linear, rel,
                                  tree_rel)

RNG = np.random.default_rng(0)


def test_linear_matches_torch():
    layer = torch.nn.Linear(5, 3)
    x = RNG.normal(size=(4, 5))
    ours = nn.Dense(3).apply({"params": linear(layer)}, jnp.asarray(x))
    assert rel(ours, layer(torch.tensor(x)).detach().numpy()) < 1e-14
    # Without the transpose a non-square kernel would not even apply: check the layout explicitly.
    assert linear(layer)["kernel"].shape == (5, 3)


def test_conv_matches_torch_nchw_against_nhwc():
    layer = torch.nn.Conv2d(3, 4, kernel_size=3, stride=2)
    x = RNG.normal(size=(2, 3, 9, 9))  # torch NCHW
    ref = layer(torch.tensor(x)).detach().numpy().transpose(0, 2, 3, 1)
    ours = nn.Conv(4, (3, 3), strides=(2, 2), padding="VALID").apply({"params": conv(layer)},
                                                                     jnp.asarray(x.transpose(0, 2, 3, 1)))
    assert rel(ours, ref) < 1e-14


def test_conv_transpose_matches_torch():
    layer = torch.nn.ConvTranspose2d(4, 2, kernel_size=3, stride=2)
    x = RNG.normal(size=(2, 4, 5, 5))
    ref = layer(torch.tensor(x)).detach().numpy().transpose(0, 2, 3, 1)  # [2, 11, 11, 2]
    ours = nn.ConvTranspose(2, (3, 3), strides=(2, 2), padding="VALID", transpose_kernel=True).apply(
        {"params": conv_transpose(layer)}, jnp.asarray(x.transpose(0, 2, 3, 1)))
    assert rel(ours, ref) < 1e-14


def test_layernorm_matches_torch():
    layer = torch.nn.LayerNorm(6)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(RNG.normal(size=6)))
        layer.bias.copy_(torch.tensor(RNG.normal(size=6)))
    x = RNG.normal(size=(3, 6))
    ours = nn.LayerNorm(epsilon=1e-5).apply({"params": layernorm(layer)}, jnp.asarray(x))
    assert rel(ours, layer(torch.tensor(x)).detach().numpy()) < 1e-12


def test_embedding_matches_torch():
    layer = torch.nn.Embedding(7, 3)
    i = np.array([0, 6, 2, 2])
    ours = nn.Embed(7, 3).apply({"params": embedding(layer)}, jnp.asarray(i))
    assert rel(ours, layer(torch.tensor(i)).detach().numpy()) < 1e-15


def test_adam_moment_getter_reads_torch_state():
    layer = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(layer.parameters(), lr=1e-3)
    zero = linear(layer, adam_moment(opt, "exp_avg"))  # before the first step: zeros, as optax starts
    assert all(float(np.abs(v).max()) == 0 for v in zero.values())
    layer(torch.ones(1, 3)).sum().backward()
    opt.step()
    mu = linear(layer, adam_moment(opt, "exp_avg"))
    # After one step exp_avg = (1 - beta1) * grad; grad of sum(W x + b) is x per row and 1 for the bias.
    assert tree_rel(mu, {"kernel": jnp.full((3, 2), 0.1), "bias": jnp.full(2, 0.1)}) < 1e-12


def test_parity_tests_skip_with_one_line_without_the_authors_code(tmp_path):
    """AUTHORS_DIR without the repository a test needs: one skip line naming the folder, the clone and the commit."""
    import os
    import subprocess
    import sys

    from tests.parity.harness import ROOT
    env = {**os.environ, "AUTHORS_DIR": str(tmp_path), "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider", "-rs",
                          "tests/parity/test_td3.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    skips = [line for line in out.stdout.splitlines() if line.startswith("SKIPPED")]
    expected = f"AUTHORS_DIR={tmp_path} has no TD3/: clone github.com/sfujim/TD3 there at 34770cc"
    assert skips and all(expected in line for line in skips), out.stdout
    assert "passed" not in out.stdout.splitlines()[-1]

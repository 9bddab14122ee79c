"""The SSIM loss with an analytic backward, its Triton kernels and the trainer's Adam step."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from backend.pipelines.reconstruct import ssim_fused
from backend.pipelines.reconstruct.adam_step import adam_step
from backend.pipelines.reconstruct.losses import photometric_loss, ssim


@pytest.mark.parametrize("shape", [(37, 53, 3), (2, 24, 31, 3), (9, 40, 3)])
def test_value_and_gradient_equal_autograd_of_the_metric(shape):
    gen = torch.Generator().manual_seed(len(shape))
    a = torch.rand(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    b = (a.detach() + 0.2 * torch.randn(shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    ref = ssim(a, b)
    (g_ref,) = torch.autograd.grad(ref, a)
    got = ssim_fused.ssim_loss_term(a, b)
    (g_got,) = torch.autograd.grad(got, a)
    assert float(got) == pytest.approx(float(ref), abs=1e-12)
    assert torch.allclose(g_got, g_ref, rtol=1e-9, atol=1e-14)


def test_photometric_loss_gradient_matches_a_finite_difference():
    gen = torch.Generator().manual_seed(3)
    a = torch.rand(20, 22, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.rand(20, 22, 3, generator=gen, dtype=torch.float64)
    (g,) = torch.autograd.grad(photometric_loss(a, b, 0.2), a)
    d = torch.zeros_like(a)
    d[7, 9, 1] = 1e-6
    with torch.no_grad():
        fd = (photometric_loss(a + d, b, 0.2) - photometric_loss(a - d, b, 0.2)) / 2e-6
    assert float(g[7, 9, 1]) == pytest.approx(float(fd), rel=1e-5)


def test_the_self_check_rejects_kernels_that_disagree():
    class Wrong:
        @staticmethod
        def forward(x, y, g, need_grad):
            st = ssim_fused._blur_torch(torch.cat([x, y, x * x, y * y, x * y]), g)
            s, grads = ssim_fused._ssim_terms(st.view(5, x.shape[0], *st.shape[-2:]))
            return s, grads

        @staticmethod
        def backward(x, y, g, grads, scale):
            return torch.zeros_like(x)

    with pytest.raises(RuntimeError, match="disagree"):
        ssim_fused._check(Wrong, "cpu")


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton is not installed")
def test_triton_kernels_agree_in_the_interpreter():
    """The CUDA kernels, run by Triton's CPU interpreter, against the PyTorch path."""
    code = ("from backend.pipelines.reconstruct import ssim_fused, ssim_triton\n"
            "ssim_fused._check(ssim_triton, 'cpu')\nprint('agree')")
    env = dict(os.environ, TRITON_INTERPRET="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "agree" in out.stdout, out.stderr[-2000:]


def test_adam_step_equals_torch_adam_across_a_resize():
    """The same parameters as six torch Adam steps, also after the state is resized the way
    gsplat's strategies do when Gaussians are added."""
    gen = torch.Generator().manual_seed(0)
    lrs = [1e-2, 1e-3, 5e-2]
    ps = [torch.nn.Parameter(torch.randn(40, 3, generator=gen)) for _ in lrs]
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    oa = [torch.optim.Adam([{"params": p, "lr": lr}], eps=1e-15, fused=True) for p, lr in zip(ps, lrs)]
    ob = [torch.optim.Adam([{"params": q, "lr": lr}], eps=1e-15, fused=True) for q, lr in zip(qs, lrs)]

    def grow(params, opts):
        for k, (p, o) in enumerate(zip(params, opts)):
            new = torch.nn.Parameter(torch.cat([p.detach(), p.detach()[:5]]))
            st = o.state.pop(p)
            st = {key: (v if key == "step" else torch.cat([v, torch.zeros_like(v[:5])])) for key, v in st.items()}
            o.param_groups[0]["params"] = [new]
            o.state[new] = st
            params[k] = new

    for it in range(12):
        if it == 6:
            grow(ps, oa)
            grow(qs, ob)
        for p, q in zip(ps, qs):
            g = torch.randn(p.shape, generator=gen)
            p.grad, q.grad = g.clone(), g.clone()
        for o in oa:
            o.step()
            o.zero_grad(set_to_none=True)
        adam_step(ob)
    for p, q, o in zip(ps, qs, ob):
        assert torch.equal(p, q) and q.grad is None
        assert float(o.state[q]["step"]) == 12

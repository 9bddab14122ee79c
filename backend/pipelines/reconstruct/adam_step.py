"""One Adam step for the trainer's per-parameter optimizers in a few kernel launches.

The densification strategies need one ``torch.optim.Adam`` per parameter (they resize each
optimizer's state when Gaussians are added or removed). Stepping six optimizers through
``Optimizer.step`` costs about a millisecond of Python per training step; :func:`adam_step`
does the same update (torch's fused Adam kernel, the same state tensors, the same step
counters) with one counter increment for all and one fused kernel per parameter.
"""
from __future__ import annotations

import torch


def _fast_path(opt) -> bool:
    if type(opt) is not torch.optim.Adam or len(opt.param_groups) != 1:
        return False
    g = opt.param_groups[0]
    return (len(g["params"]) == 1 and bool(g.get("fused")) and not g["amsgrad"] and not g["maximize"]
            and g["weight_decay"] == 0 and not torch.is_tensor(g["lr"]))


def adam_step(optimizers) -> None:
    """``opt.step(); opt.zero_grad(set_to_none=True)`` for each optimizer, faster where it can."""
    fast, steps = [], []
    for opt in optimizers:
        if not _fast_path(opt):
            opt.step()
            opt.zero_grad(set_to_none=True)
            continue
        group = opt.param_groups[0]
        p = group["params"][0]
        if p.grad is None:
            continue
        state = opt.state[p]
        if not state:  # as Adam initialises it for the fused kernel
            state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        fast.append((group, p, state))
        steps.append(state["step"])
    if not fast:
        return
    if steps[0].is_cpu:
        torch._foreach_add_(steps, torch.tensor(1.0), alpha=1.0)
    else:
        torch._foreach_add_(steps, 1)
    for group, p, state in fast:
        beta1, beta2 = group["betas"]
        torch._fused_adam_([p], [p.grad], [state["exp_avg"]], [state["exp_avg_sq"]], [], [state["step"]],
                           amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=0.0,
                           eps=group["eps"], maximize=False, grad_scale=None, found_inf=None)
        p.grad = None

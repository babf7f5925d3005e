"""SAC updates per second, batch 256, Hopper sizes (D = 11, A = 3), Table 3 networks (256, 256).

Compares, in one run, ``offline_mbrl.agents.sac.SAC`` (both critics as one batched module, one optimizer
step for both, fused Polyak update) with a plain reference written here: two separate critic networks with
two optimizers and a per-parameter Polyak loop (the common textbook implementation). Prints one line per
implementation and the speed-up as ``<ratio>x``.

    python benchmarks/bench_sac.py [--device cpu|cuda] [--updates 300] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn
from torch.nn import functional as F

from offline_mbrl.agents.sac import SAC, SACConfig, TanhGaussianActor

D, A, B = 11, 3, 256


def mlp(inp: int, out: int, hidden=(256, 256)) -> nn.Sequential:
    layers, last = [], inp
    for h in hidden:
        layers += [nn.Linear(last, h), nn.ReLU()]
        last = h
    return nn.Sequential(*layers, nn.Linear(last, out))


class PlainSAC:
    """Reference: two critic networks, two critic optimizers, Polyak update parameter by parameter."""

    def __init__(self, device: torch.device, cfg: SACConfig = SACConfig()) -> None:
        self.cfg = cfg
        self.actor = TanhGaussianActor(D, A, cfg.hidden_dims).to(device)
        self.q1, self.q2 = mlp(D + A, 1).to(device), mlp(D + A, 1).to(device)
        self.q1_t, self.q2_t = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        self.opt_a = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.opt_q1 = torch.optim.Adam(self.q1.parameters(), lr=cfg.critic_lr)
        self.opt_q2 = torch.optim.Adam(self.q2.parameters(), lr=cfg.critic_lr)
        self.log_alpha = torch.zeros((), device=device, requires_grad=True)
        self.opt_alpha = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_lr)

    def update(self, b: dict) -> None:
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            na, nlp = self.actor(b["next_obs"])
            x = torch.cat([b["next_obs"], na], -1)
            nq = torch.min(self.q1_t(x), self.q2_t(x)).squeeze(-1) - alpha * nlp
            y = b["rewards"] + self.cfg.gamma * (1 - b["terminals"].float()) * nq
        x = torch.cat([b["obs"], b["actions"]], -1)
        for q, opt in ((self.q1, self.opt_q1), (self.q2, self.opt_q2)):
            loss = F.mse_loss(q(x).squeeze(-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        a, lp = self.actor(b["obs"])
        xa = torch.cat([b["obs"], a], -1)
        actor_loss = (alpha * lp - torch.min(self.q1(xa), self.q2(xa)).squeeze(-1)).mean()
        self.opt_a.zero_grad()
        actor_loss.backward()
        self.opt_a.step()
        alpha_loss = -(self.log_alpha * (lp.detach() - A)).mean()
        self.opt_alpha.zero_grad()
        alpha_loss.backward()
        self.opt_alpha.step()
        with torch.no_grad():
            for net, target in ((self.q1, self.q1_t), (self.q2, self.q2_t)):
                for p, pt in zip(net.parameters(), target.parameters()):
                    pt.mul_(1 - self.cfg.tau).add_(self.cfg.tau * p)


def updates_per_second(update, batches, device) -> float:
    for b in batches[:20]:  # warm-up
        update(b)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for b in batches:
        update(b)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(batches) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    n = 100_000
    data = {
        "obs": torch.randn(n, D, device=device),
        "actions": torch.rand(n, A, device=device) * 2 - 1,
        "rewards": torch.randn(n, device=device),
        "next_obs": torch.randn(n, D, device=device),
        "terminals": torch.rand(n, device=device) < 0.01,
    }
    batches = []
    for _ in range(args.updates):
        i = torch.randint(0, n, (B,), device=device)
        batches.append({k: v[i] for k, v in data.items()})
    ours = SAC(D, A, SACConfig(auto_alpha=True), device=device)
    plain = PlainSAC(device)
    r_plain = updates_per_second(plain.update, batches, device)
    r_ours = updates_per_second(ours.update, batches, device)
    print(f"device {device}, threads {args.threads}, batch {B}, Hopper sizes D={D} A={A}, networks (256, 256)")
    print(f"plain reference (2 critics, 2 optimizers): {r_plain:8.1f} updates/s")
    print(f"offline_mbrl SAC (batched critics):        {r_ours:8.1f} updates/s")
    print(f"sac update: {r_ours / r_plain:.2f}x")


if __name__ == "__main__":
    main()

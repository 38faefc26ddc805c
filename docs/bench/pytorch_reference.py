"""PyTorch reference for `islands bench train` / `bench sample` / `bench ops` (not a dependency of Islands).

The same UNet as src/Islands.Diffusion/Modules/UNet.cs (default ModelConfig: base 32, multipliers 1,2,4, one ResBlock per
level, 128-d time embedding, 8 groups, 10 classes + null, 28x28 grey) and the same timed step (flow-matching loss,
backward, gradient clipping at 1.0, AdamW, EMA), so that both are measured on one machine in one session.

    python3 docs/bench/pytorch_reference.py [--batch 128] [--steps 20] [--precision fp32|bf16|both] [--layout nchw|nhwc]
    python3 docs/bench/pytorch_reference.py --ops    # per-layer times, as `islands bench ops` prints them

Debian's python3-torch (1.13) runs it. Islands' malloc settings (2 arenas, 64 MiB mmap threshold, 128 MiB trim
threshold) are glibc environment variables here: MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=67108864 MALLOC_TRIM_THRESHOLD_=134217728.
"""
import argparse, math, time
import torch
import torch.nn as nn
import torch.nn.functional as F


class ResBlock(nn.Module):
    def __init__(self, cin, cout, emb, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb_proj = nn.Linear(emb, cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb_proj(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class UNet(nn.Module):
    def __init__(self, base=32, mults=(1, 2, 4), emb=128, groups=8, classes=10, channels=1):
        super().__init__()
        ch = [base * m for m in mults]
        self.emb_dim = emb
        self.conv_in = nn.Conv2d(channels, ch[0], 3, padding=1)
        self.time_fc1, self.time_fc2 = nn.Linear(emb, emb), nn.Linear(emb, emb)
        self.class_embed = nn.Embedding(classes + 1, emb)
        self.down, self.downs, cur = nn.ModuleList(), nn.ModuleList(), ch[0]
        for level, c in enumerate(ch):
            self.down.append(ResBlock(cur, c, emb, groups))
            cur = c
            if level < len(ch) - 1:
                self.downs.append(nn.Conv2d(cur, cur, 3, stride=2, padding=1))
        self.mid = ResBlock(cur, cur, emb, groups)
        self.up = nn.ModuleList()
        for c in reversed(ch):
            self.up.append(ResBlock(cur + c, c, emb, groups))
            cur = c
        self.norm_out = nn.GroupNorm(groups, cur)
        self.conv_out = nn.Conv2d(cur, channels, 3, padding=1)

    def time_embedding(self, t):
        half = self.emb_dim // 2
        freqs = torch.exp(torch.arange(half, dtype=torch.float32) * (-math.log(10000.0) / half))
        args = t.float()[:, None] * 1000.0 * freqs[None]
        return torch.cat([torch.sin(args), torch.cos(args)], 1)

    def forward(self, x, t, classes):
        emb = self.time_fc2(F.silu(self.time_fc1(self.time_embedding(t).to(x.dtype)))) + self.class_embed(classes).to(x.dtype)
        h, skips = self.conv_in(x), []
        for level, block in enumerate(self.down):
            h = block(h, emb)
            skips.append(h)
            if level < len(self.downs):
                h = self.downs[level](h)
        h = self.mid(h, emb)
        for i, block in enumerate(self.up):
            h = block(torch.cat([h, skips[len(skips) - 1 - i]], 1), emb)
            if i < len(self.up) - 1:
                h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        return self.conv_out(F.silu(self.norm_out(h)))


def train(precision, batch, steps, warmup, layout):
    torch.manual_seed(0)
    model = UNet()
    ema = UNet()
    ema.load_state_dict(model.state_dict())
    fmt = torch.channels_last if layout == "nhwc" else torch.contiguous_format
    model.to(memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    images = torch.rand(1024, 1, 28, 28) * 2 - 1
    labels = torch.randint(0, 10, (1024,))
    params, ema_params = list(model.parameters()), list(ema.parameters())
    # bf16 as Islands does it: a bfloat16 copy computes forward and backward; fp32 master weights, optimizer and EMA.
    compute = UNet().to(torch.bfloat16).to(memory_format=fmt) if precision == "bf16" else model
    compute_params = list(compute.parameters())

    def step(i):
        idx = torch.randint(0, 1024, (batch,))
        x0, c = images[idx], labels[idx]
        c = torch.where(torch.rand(batch) < 0.1, torch.full_like(c, 10), c)
        t = torch.sigmoid(torch.randn(batch))
        eps = torch.randn_like(x0)
        tb = t.view(-1, 1, 1, 1)
        xt = ((1 - tb) * x0 + tb * eps).contiguous(memory_format=fmt)
        opt.zero_grad()
        if compute is not model:
            with torch.no_grad():
                for cp, p in zip(compute_params, params):
                    cp.copy_(p)
            compute.zero_grad()
        pred = compute(xt.to(compute_params[0].dtype), t, c)
        loss = F.mse_loss(pred.float(), eps - x0)
        loss.backward()
        if compute is not model:
            with torch.no_grad():
                for cp, p in zip(compute_params, params):
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                    p.grad.copy_(cp.grad)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        loss.item()
        opt.step()
        decay = min(0.999, (1.0 + i) / (10.0 + i))
        with torch.no_grad():
            for e, p in zip(ema_params, params):
                e.mul_(decay).add_(p, alpha=1 - decay)

    for i in range(warmup):
        step(i)
    start = time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    seconds = time.perf_counter() - start
    return steps * batch / seconds


def sample(precision, count, steps, layout, rounds=3):
    torch.manual_seed(0)
    model = UNet().eval()
    if precision == "bf16":
        model.to(torch.bfloat16)
    fmt = torch.channels_last if layout == "nhwc" else torch.contiguous_format
    model.to(memory_format=fmt)
    classes = torch.arange(count) % 10
    def run(n, k):
        x = torch.randn(n, 1, 28, 28).contiguous(memory_format=fmt)
        dtype = next(model.parameters()).dtype
        with torch.no_grad():
            for s in range(k):
                t = torch.full((n,), 1.0 - s / k)
                x = x - (1.0 / k) * model(x.to(dtype), t, classes[:n]).float()
        return x
    run(count, 2)  # warm-up at the measured batch size, as bench sample does
    times = []
    for _ in range(rounds):  # the median of several runs, as bench sample reports
        start = time.perf_counter()
        run(count, steps)
        times.append(time.perf_counter() - start)
    return count / sorted(times)[len(times) // 2]


def layer_times(precision, batch, layout, seconds=0.15):
    """Forward (no autograd) and backward of every Conv2d, GroupNorm, SiLU and Linear at the shapes one step gives them."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    fmt = torch.channels_last if layout == "nhwc" else torch.contiguous_format
    model = UNet().to(dtype)
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((m, tuple(i[0].shape))))
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.GroupNorm, nn.Linear))]
    with torch.no_grad():
        model(torch.randn(batch, 1, 28, 28, dtype=dtype), torch.full((batch,), 0.5), torch.zeros(batch, dtype=torch.long))
    for h in hooks:
        h.remove()
    rows = {}
    for m, shape in seen:
        at = f" @{shape[2]}x{shape[3]}" if len(shape) == 4 else ""
        if isinstance(m, nn.Conv2d):
            key = ("conv", f"{m.kernel_size[0]}x{m.kernel_size[1]} {m.in_channels}->{m.out_channels}{' stride %d' % m.stride[0] if m.stride[0] > 1 else ''}{at}")
        elif isinstance(m, nn.GroupNorm):
            key = ("groupnorm", f"{shape[1]} channels{at}")
            rows.setdefault(("silu", key[1]), [nn.SiLU(), shape, 0])[2] += 1
        else:
            key = ("linear", f"{m.in_features}->{m.out_features}")
        rows.setdefault(key, [m, shape, 0])[2] += 1

    def timed(run):
        run()
        best = float("inf")
        for _ in range(3):
            count, start = 0, time.perf_counter()
            while count < 2 or time.perf_counter() - start < seconds / 3:
                run()
                count += 1
            best = min(best, (time.perf_counter() - start) / count * 1e3)
        return best

    out = []
    for (op, desc), (m, shape, count) in rows.items():
        x = torch.randn(shape, dtype=dtype)
        if len(shape) == 4:
            x = x.contiguous(memory_format=fmt)
        with torch.no_grad():
            fwd = timed(lambda: m(x))
        x.requires_grad_(True)
        g = torch.randn_like(m(x))
        with_grad = timed(lambda: m(x))
        def fb():
            x.grad = None
            m.zero_grad(set_to_none=True)
            m(x).backward(g)
        out.append((op, desc, count, fwd, max(0.0, timed(fb) - with_grad)))
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--precision", default="both", choices=["fp32", "bf16", "both"])
    ap.add_argument("--layout", default="nchw", choices=["nchw", "nhwc"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sample-count", type=int, default=64)
    ap.add_argument("--sample-steps", type=int, default=20)
    ap.add_argument("--ops", action="store_true", help="per-layer forward/backward times instead of the whole step")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.ops:
        for p in (["fp32", "bf16"] if a.precision == "both" else [a.precision]):
            rows = layer_times(p, a.batch, a.layout)
            print(f"pytorch {torch.__version__} {p}, layout {a.layout}, batch {a.batch}, {a.threads} threads")
            print("  operation  shape                         per step  forward ms  backward ms  ms per step")
            for op, desc, count, f, b in sorted(rows, key=lambda r: -r[2] * (r[3] + r[4])):
                print(f"  {op:<10} {desc:<30} {count:>8} {f:>11.2f} {b:>12.2f} {count * (f + b):>12.1f}")
            for kind in ["conv", "groupnorm", "silu", "linear"]:
                print(f"  {kind}: {sum(c * (f + b) for o, _, c, f, b in rows if o == kind):.1f} ms per step")
        raise SystemExit(0)
    n = sum(p.numel() for p in UNet().parameters())
    print(f"pytorch {torch.__version__}, {a.threads} threads, {n:,} parameters, layout {a.layout}")
    for p in (["fp32", "bf16"] if a.precision == "both" else [a.precision]):
        print(f"train {p}: {train(p, a.batch, a.steps, a.warmup, a.layout):.1f} images/s at batch {a.batch}")
        print(f"sample {p}: {sample(p, a.sample_count, a.sample_steps, a.layout):.1f} images/s ({a.sample_count} x {a.sample_steps} Euler)")

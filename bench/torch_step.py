#!/usr/bin/python3
"""Reference timing: one BYOL training step in PyTorch (Debian's python3-torch) at its best on this machine, on the
CIFAR ResNet-18, the 28x28 ConvNet or the paper's ResNet-50 (224 px), in fp32 or under bf16 autocast.

Same step as byol's: two views, online forward and backward, target forward without gradient, symmetric loss,
SGD-momentum update (LARS's extra per-layer norms are negligible here), EMA of the target. Heads Linear(d->4096) -> BN
-> ReLU -> Linear(4096->256).

At its best: Debian's torch runs Linear layers on the reference BLAS unless OpenBLAS is loaded (2x slower on the BYOL
step), so this script re-executes itself with OpenBLAS first on the library path — the system's
(libopenblas0-openmp / -pthread), else one extracted from Debian's libopenblas0-openmp package (`apt-get download` +
`dpkg -x` into ~/.cache/byol-bench; nothing is installed). With --search it times every configuration — views through
the network separately or concatenated into one batch, NCHW or channels_last — and reports the fastest, naming it.

Prints one JSON line: {"model", "batch", "bf16", "images_per_s", "config", "configs", "threads", "blas",
"flops_per_image", "gflops", "gemm_gflops", "max_rss_mb"}.

    /usr/bin/python3 bench/torch_step.py --model resnet18-cifar --batch 64 --steps 3 [--bf16] [--search]
"""
import argparse
import copy
import glob
import json
import os
import resource
import subprocess
import sys
import time

ARCH = "x86_64-linux-gnu"
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "byol-bench", "openblas")


def openblas_dir():
    """A folder holding OpenBLAS's libblas.so.3: the system's, else one extracted from Debian's package, else None."""
    for variant in ("openblas-openmp", "openblas-pthread"):
        for root in ("/usr/lib", CACHE + "/usr/lib"):
            d = f"{root}/{ARCH}/{variant}"
            if os.path.exists(f"{d}/libblas.so.3"):
                return d
    try:
        os.makedirs(CACHE, exist_ok=True)
        subprocess.run(["apt-get", "download", "libopenblas0-openmp"], cwd=CACHE, check=True, capture_output=True, timeout=300)
        deb = sorted(glob.glob(os.path.join(CACHE, "libopenblas0-openmp_*.deb")))[-1]
        subprocess.run(["dpkg", "-x", deb, CACHE], check=True, capture_output=True, timeout=300)
    except (OSError, subprocess.SubprocessError, IndexError) as e:
        print(f"torch_step: no OpenBLAS ({e}); Linear layers run on the reference BLAS", file=sys.stderr)
        return None
    d = f"{CACHE}/usr/lib/{ARCH}/openblas-openmp"
    return d if os.path.exists(f"{d}/libblas.so.3") else None


def with_openblas():
    """Re-executes this script with OpenBLAS first on the library path (once); returns the folder in use."""
    if "BYOL_TORCH_BLAS" in os.environ:
        return os.environ["BYOL_TORCH_BLAS"] or None
    d = openblas_dir()
    env = dict(os.environ, BYOL_TORCH_BLAS=d or "")
    if d:
        env["LD_LIBRARY_PATH"] = d + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
        flags = open("/proc/cpuinfo").read()
        if "avx512f" in flags:
            env.setdefault("OPENBLAS_CORETYPE", "SKYLAKEX")
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


BLAS = with_openblas()

import torch  # noqa: E402  (after the library path is set)
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        return F.relu(y + (x if self.short is None else self.short(x)))


def resnet18_cifar():
    layers = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
    cin = 64
    for g, c in enumerate((64, 128, 256, 512)):
        for b in range(2):
            layers.append(Block(cin, c, 2 if (b == 0 and g > 0) else 1))
            cin = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


def convnet():
    """byol's ConvNet (src/nets/convnet.ts): three 3x3 conv -> BN -> ReLU stages (32, 64, 128), 2x2 max-pool after
    the first two, global average pooling."""
    layers, cin = [], 1
    for i, c in enumerate((32, 64, 128)):
        layers += [nn.Conv2d(cin, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
        if i < 2:
            layers.append(nn.MaxPool2d(2))
        cin = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


def resnet50():
    """torchvision's ResNet-50 v1 (the paper's encoder), without its classifier: 2048 features."""
    import torchvision

    m = torchvision.models.resnet50()
    m.fc = nn.Identity()
    return m


def mlp(d):
    return nn.Sequential(nn.Linear(d, 4096), nn.BatchNorm1d(4096), nn.ReLU(), nn.Linear(4096, 256, bias=False))


MODELS = {
    "convnet": (convnet, 128, (1, 28, 28)),
    "resnet18-cifar": (resnet18_cifar, 512, (3, 32, 32)),
    "resnet50": (resnet50, 2048, (3, 224, 224)),
}


def macs_per_image(module, shape):
    """Multiply-accumulates of one image through `module` (convolutions and linear layers), by forward hooks."""
    total = [0]

    def hook(m, inputs, out):
        if isinstance(m, nn.Conv2d):
            total[0] += out[0].numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            total[0] += m.in_features * m.out_features

    hs = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was = module.training
    module.eval()
    with torch.no_grad():
        module(torch.zeros(1, *shape))
    module.train(was)
    for h in hs:
        h.remove()
    return total[0]


def gemm_gflops(bf16, n=2048, reps=3):
    a = torch.rand(n, n)
    b = torch.rand(n, n)
    if bf16:
        a, b = a.bfloat16(), b.bfloat16()
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def time_step(args, layout, views):
    torch.manual_seed(0)
    build, dim, shape = MODELS[args.model]
    online = nn.Sequential(build(), mlp(dim))
    predictor = mlp(256)
    target = copy.deepcopy(online)
    for p in target.parameters():
        p.requires_grad_(False)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    online, target = online.to(memory_format=fmt), target.to(memory_format=fmt)
    params = list(online.parameters()) + list(predictor.parameters())
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1.5e-6)
    x1 = torch.rand(args.batch, *shape).contiguous(memory_format=fmt)
    x2 = torch.rand(args.batch, *shape).contiguous(memory_format=fmt)
    both = torch.cat([x1, x2]).contiguous(memory_format=fmt)
    n = args.batch

    def loss_fn(p, z):
        return (2 - 2 * F.cosine_similarity(p, z, dim=-1)).mean()

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            with torch.no_grad():
                if views == "concat":
                    t = target(both)
                    t1, t2 = t[:n], t[n:]
                else:
                    t1, t2 = target(x1), target(x2)
            if views == "concat":
                p = predictor(online(both))
                p1, p2 = p[:n], p[n:]
            else:
                p1, p2 = predictor(online(x1)), predictor(online(x2))
            loss = loss_fn(p1.float(), t2.float()) + loss_fn(p2.float(), t1.float())
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for t, o in zip(target.parameters(), online.parameters()):
                t.mul_(0.996).add_(o, alpha=0.004)

    for _ in range(args.warmup):  # untimed, as the native rows (bench/step.ts --warmup)
        step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    secs = time.perf_counter() - t0
    flops = 2 * 2 * (3 * (macs_per_image(online, shape) + macs_per_image(predictor, (256,))) + macs_per_image(target, shape))
    return args.steps * args.batch / secs, flops


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--model", choices=tuple(MODELS), default="resnet18-cifar")
    # bf16 autocast: matrix products and convolutions in bfloat16 (oneDNN's AVX512-BF16 / AMX kernels), fp32 weights.
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--layout", choices=("nchw", "channels_last"), default="nchw")
    ap.add_argument("--views", choices=("separate", "concat"), default="separate")
    ap.add_argument("--search", nargs="?", const="all", choices=("all", "layouts"), help="time every layout x views configuration (or, `layouts`, both layouts with views separate), report the best")
    # Debian's torch starts with one OpenMP thread here; the peer at its best uses every core.
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    views = ("separate", "concat") if args.search == "all" else ("separate",)
    configs = [(l, v) for l in ("nchw", "channels_last") for v in views] if args.search else [(args.layout, args.views)]
    results = {}
    flops = 0
    for layout, views in configs:
        ips, flops = time_step(args, layout, views)
        results[f"{layout}, views {views}"] = ips
    best = max(results, key=results.get)
    out = {
        "model": args.model,
        "batch": args.batch,
        "bf16": args.bf16,
        "images_per_s": results[best],
        "config": best,
        "configs": results,
        "threads": torch.get_num_threads(),
        "blas": BLAS or "reference BLAS (no OpenBLAS found)",
        "flops_per_image": flops,
        "gflops": results[best] * flops / 1e9,
        "gemm_gflops": gemm_gflops(args.bf16),
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()

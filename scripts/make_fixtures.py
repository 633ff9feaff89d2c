#!/usr/bin/python3
"""Reference values for byol's numerical tests, computed independently with PyTorch (Debian's python3-torch).

Every formula here is written from the paper (Grill et al. 2020) and the official code's documented
behaviour, in float64, without looking at the TypeScript implementation; torch.optim's own SGD and AdamW
serve as references for those two optimizers. Run with Debian's interpreter:

    /usr/bin/python3 scripts/make_fixtures.py        (writes test/fixtures/reference.json)
"""
import json
import math
import os

import torch

torch.manual_seed(20200613)
D = torch.float64


def t(x):
    """Tensor -> {shape, data} with data flattened row-major (the TypeScript side reshapes)."""
    x = x.detach().to(D)
    return {"shape": list(x.shape), "data": [float(v) for v in x.reshape(-1).tolist()]}


def rnd(*shape, scale=1.0):
    return torch.randn(*shape, dtype=D) * scale


# ---------------------------------------------------------------- loss
def normalize(x):
    return x / torch.sqrt(torch.clamp((x * x).sum(-1, keepdim=True), min=1e-12))


def regression(p, z):
    return ((normalize(p) - normalize(z)) ** 2).sum(-1)


def negatives(q, z_same, z_other, alpha):
    qn = normalize(q)
    same = qn @ normalize(z_same).T / alpha
    other = qn @ normalize(z_other).T / alpha
    b = q.shape[0]
    rows = []
    for i in range(b):
        terms = [same[i, j] for j in range(b) if j != i] + [other[i, j] for j in range(b)]
        rows.append(torch.logsumexp(torch.stack(terms), 0))
    return 2 * alpha * torch.stack(rows).mean()


def loss_fixture():
    B, Dm = 6, 5
    p1, p2, z1, z2 = (rnd(B, Dm).requires_grad_(True) for _ in range(4))
    per = regression(p1, z2)
    cos_form = 2 - 2 * (p1 * z2).sum(-1) / (p1.norm(dim=-1) * z2.norm(dim=-1))
    assert torch.allclose(per, cos_form)
    sym = regression(p1, z2).mean() + regression(p2, z1).mean()
    (g_sym,) = torch.autograd.grad(sym, p1, retain_graph=True)
    alpha, beta = 0.5, 0.7
    neg1 = negatives(p1, z1, z2, alpha)
    neg2 = negatives(p2, z2, z1, alpha)
    full = sym + beta * (neg1 + neg2)
    (g_full,) = torch.autograd.grad(full, p1)
    zn = normalize(z1)
    collapse = zn.std(0, unbiased=False).mean()
    return {
        "p1": t(p1), "p2": t(p2), "z1": t(z1), "z2": t(z2),
        "perExample": t(per), "symmetric": float(sym), "gradSymmetricP1": t(g_sym),
        "alpha": alpha, "beta": beta, "negatives1": float(neg1), "negatives2": float(neg2),
        "full": float(full), "gradFullP1": t(g_full), "collapseZ1": float(collapse),
        "zeroRowNormalized": t(normalize(torch.zeros(1, 3, dtype=D))),
    }


# ---------------------------------------------------------------- EMA, tau, learning rate
def ema_fixture():
    xi = [rnd(3, 4), rnd(5)]
    theta = [rnd(3, 4), rnd(5)]
    tau = 0.99
    return {"tau": tau, "target": [t(x) for x in xi], "online": [t(x) for x in theta],
            "expected": [t(tau * a + (1 - tau) * b) for a, b in zip(xi, theta)]}


def tau_at(k, K, base):
    return 1 - (1 - base) * (math.cos(math.pi * k / K) + 1) / 2


def tau_fixture():
    rows = []
    for K, base in ((1000, 0.996), (37, 0.99), (10, 0.0)):
        for k in sorted({0, 1, K // 4, K // 2, K - 1, K}):
            rows.append({"step": k, "total": K, "base": base, "tau": tau_at(k, K, base)})
    return rows


def lr_at(step, base, batch, warmup, total):
    peak = base * batch / 256
    if step < warmup:
        return peak * step / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * min(step - warmup, total - warmup) / (total - warmup)))


def lr_fixture():
    rows = []
    for base, batch, warmup, total in ((0.2, 4096, 10, 100), (1.0, 256, 0, 50), (0.3, 64, 5, 20)):
        for s in sorted({0, 1, warmup // 2, max(warmup - 1, 0), warmup, warmup + 1, (warmup + total) // 2, total - 1, total, total + 3}):
            rows.append({"step": s, "base": base, "batchSize": batch, "warmupSteps": warmup,
                         "totalSteps": total, "lr": lr_at(s, base, batch, warmup, total)})
    return rows


# ---------------------------------------------------------------- optimizers
def optimizer_params():
    """A weight matrix, a bias, a conv kernel, a BN scale, and a zero weight matrix (trust ratio falls back to 1)."""
    return [rnd(4, 3), rnd(3), rnd(2, 2, 1, 3), 1 + rnd(3, scale=0.1), torch.zeros(2, 2, dtype=D)]


def lars_reference(params, grads, mu, lr, wd, momentum, eta):
    """Official LARS chain: weight decay, trust-ratio scaling (both skipped for 1-D params), momentum, -lr."""
    new_p, new_mu = [], []
    for p, g, m in zip(params, grads, mu):
        u = g.clone()
        if p.dim() > 1:
            u = u + wd * p
            pn, un = p.norm(), u.norm()
            ratio = eta * pn / un if (pn > 0 and un > 0) else torch.tensor(1.0, dtype=D)
            u = u * ratio
        m2 = momentum * m + u
        new_mu.append(m2)
        new_p.append(p - lr * m2)
    return new_p, new_mu


def lars_fixture():
    params = optimizer_params()
    mu0 = [rnd(*p.shape, scale=0.01) for p in params]
    steps = [[rnd(*p.shape) for p in params] for _ in range(2)]
    lrs = [0.5, 0.25]
    hp = {"weightDecay": 0.05, "momentum": 0.9, "eta": 0.001}
    p, mu = params, mu0
    expected = []
    for grads, lr in zip(steps, lrs):
        p, mu = lars_reference(p, grads, mu, lr, hp["weightDecay"], hp["momentum"], hp["eta"])
        expected.append({"params": [t(x) for x in p], "mu": [t(x) for x in mu]})
    return {**hp, "params": [t(x) for x in params], "mu": [t(x) for x in mu0], "lrs": lrs,
            "grads": [[t(g) for g in gs] for gs in steps], "expected": expected}


def torch_optimizer_fixture(kind):
    params = optimizer_params()
    steps = [[rnd(*p.shape) for p in params] for _ in range(3)]
    lrs = [0.1, 0.05, 0.02]
    wd = 0.05
    ps = [p.clone().requires_grad_(True) for p in params]
    decay = [p for p in ps if p.dim() > 1]
    no_decay = [p for p in ps if p.dim() <= 1]
    groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
    if kind == "adamw":
        hp = {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "weightDecay": wd}
        opt = torch.optim.AdamW(groups, lr=lrs[0], betas=(0.9, 0.999), eps=1e-8)
    else:
        hp = {"momentum": 0.9, "weightDecay": wd, "nesterov": False}
        opt = torch.optim.SGD(groups, lr=lrs[0], momentum=0.9)
    expected = []
    for grads, lr in zip(steps, lrs):
        for g in opt.param_groups:
            g["lr"] = lr
        for p, g in zip(ps, grads):
            p.grad = g.clone()
        opt.step()
        expected.append([t(p) for p in ps])
    return {**hp, "params": [t(x) for x in params], "lrs": lrs,
            "grads": [[t(g) for g in gs] for gs in steps], "expected": expected}


# ---------------------------------------------------------------- one whole BYOL run on a tiny MLP
def full_step_fixture():
    B, H, W, C = 6, 2, 2, 3
    IN, F, HID, OUT = H * W * C, 8, 16, 4
    bn_momentum, eps = 0.9, 1e-5

    def linear(i, o, bias=True):
        layer = {"kernel": rnd(i, o, scale=1 / math.sqrt(i))}
        if bias:
            layer["bias"] = rnd(o, scale=0.1)
        return layer

    def head(i):
        return {"l1": linear(i, HID), "gamma": 1 + rnd(HID, scale=0.1), "beta": rnd(HID, scale=0.1),
                "l2": linear(HID, OUT, bias=False),
                "mean": torch.zeros(HID, dtype=D), "var": torch.ones(HID, dtype=D)}

    online = {"enc": linear(IN, F), "proj": head(F), "pred": head(OUT)}

    def trainable(net, with_pred):
        ws = [net["enc"]["kernel"], net["enc"]["bias"]]
        names = ["proj", "pred"] if with_pred else ["proj"]
        for n in names:
            h = net[n]
            ws += [h["l1"]["kernel"], h["l1"]["bias"], h["gamma"], h["beta"], h["l2"]["kernel"]]
        return ws

    def state(net, with_pred):
        names = ["proj", "pred"] if with_pred else ["proj"]
        return [s for n in names for s in (net[n]["mean"], net[n]["var"])]

    def head_fwd(h, x):
        y = x @ h["l1"]["kernel"] + h["l1"]["bias"]
        mean = y.mean(0)
        var = y.var(0, unbiased=False)  # biased, as Haiku and tfjs-layers keep it
        h["mean"] = bn_momentum * h["mean"] + (1 - bn_momentum) * mean.detach()
        h["var"] = bn_momentum * h["var"] + (1 - bn_momentum) * var.detach()
        y = (y - mean) / torch.sqrt(var + eps) * h["gamma"] + h["beta"]
        return torch.relu(y) @ h["l2"]["kernel"]

    def project(net, x):
        f = torch.relu(x.reshape(x.shape[0], -1) @ net["enc"]["kernel"] + net["enc"]["bias"])
        return head_fwd(net["proj"], f)

    import copy
    init_online = copy.deepcopy(online)
    target = copy.deepcopy({"enc": online["enc"], "proj": online["proj"]})

    hp = {"batchSize": B, "totalSteps": 10, "warmupSteps": 0, "baseLearningRate": 4.0, "tau": 0.9,
          "weightDecay": 0.01, "momentum": 0.9, "larsEta": 0.001}
    views = [(rnd(B, H, W, C), rnd(B, H, W, C)) for _ in range(3)]
    mu = None
    losses, taus, lrs = [], [], []
    for k, (v1, v2) in enumerate(views):
        with torch.no_grad():
            t1, t2 = project(target, v1), project(target, v2)
        params = [p.detach().clone().requires_grad_(True) for p in trainable(online, True)]
        it = iter(params)
        net = {"enc": {"kernel": next(it), "bias": next(it)}}
        for n in ("proj", "pred"):
            net[n] = {"l1": {"kernel": next(it), "bias": next(it)}, "gamma": next(it), "beta": next(it),
                      "l2": {"kernel": next(it)}, "mean": online[n]["mean"], "var": online[n]["var"]}
        z1, z2 = project(net, v1), project(net, v2)
        p1, p2 = head_fwd(net["pred"], z1), head_fwd(net["pred"], z2)
        loss = regression(p1, t2).mean() + regression(p2, t1).mean()
        grads = torch.autograd.grad(loss, params)
        lr = lr_at(k, hp["baseLearningRate"], B, hp["warmupSteps"], hp["totalSteps"])
        tau = tau_at(k, hp["totalSteps"], hp["tau"])
        if mu is None:
            mu = [torch.zeros_like(p) for p in params]
        new_p, mu = lars_reference([p.detach() for p in params], grads, mu, lr, hp["weightDecay"], hp["momentum"], hp["larsEta"])
        it = iter(new_p)
        online["enc"] = {"kernel": next(it), "bias": next(it)}
        for n in ("proj", "pred"):
            online[n].update({"l1": {"kernel": next(it), "bias": next(it)}, "gamma": next(it), "beta": next(it),
                              "l2": {"kernel": next(it)}, "mean": net[n]["mean"], "var": net[n]["var"]})
        on_part = trainable(online, False)
        tg = trainable(target, False)
        new_t = [tau * a + (1 - tau) * b for a, b in zip(tg, on_part)]
        it = iter(new_t)
        target["enc"] = {"kernel": next(it), "bias": next(it)}
        target["proj"].update({"l1": {"kernel": next(it), "bias": next(it)}, "gamma": next(it), "beta": next(it),
                               "l2": {"kernel": next(it)}})
        losses.append(float(loss))
        taus.append(tau)
        lrs.append(lr)
    return {
        **hp, "inputShape": [H, W, C], "featureDim": F, "hiddenDim": HID, "outputDim": OUT,
        "initialOnline": [t(x) for x in trainable(init_online, True)],
        "views": [[t(a), t(b)] for a, b in views],
        "losses": losses, "taus": taus, "lrs": lrs,
        "online": [t(x) for x in trainable(online, True)],
        "onlineState": [t(x) for x in state(online, True)],
        "target": [t(x) for x in trainable(target, False)],
        "targetState": [t(x) for x in state(target, False)],
    }


def main():
    out = {
        "generator": "scripts/make_fixtures.py",
        "torch": torch.__version__,
        "loss": loss_fixture(),
        "ema": ema_fixture(),
        "tau": tau_fixture(),
        "learningRate": lr_fixture(),
        "lars": lars_fixture(),
        "adamw": torch_optimizer_fixture("adamw"),
        "sgd": torch_optimizer_fixture("sgd"),
        "fullStep": full_step_fixture(),
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "reference.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)
    print(f"wrote {os.path.relpath(path)}")


if __name__ == "__main__":
    main()

"""Training throughput in real (unpadded) tokens per second, and model FLOP/s as a
fraction of this machine's torch matmul FLOP/s at the model's matrix shapes.

    python benchmarks/train_throughput.py [--device cpu|cuda] [--steps 40] [--threads N]

Cases (the paper's Table 1 sizes: d_model 256, ff 512, batch 50, lengths 1..100):
  (a) reverse_100, 2 layers, 1 head
  (b) sort_by_freq_26_bos_with_attns, 3 layers, 2 heads, attention-supervised
Each case runs the real training step of rasp_hydra.train (the same loss, selectors,
optimizer and length-bucketed batches as a run), times `--steps` steps after warm-up, and
counts model FLOPs per real token: 6 x (matmul weights) + 12 x layers x n x d_model
(attention scores and mixing, forward and backward) with n the sequence's own length;
padding work counts as waste. The matmul reference (MatmulReference) times the same
products alone at the mean batch's shapes, one pass between every two training steps
(the same thread count, the same machine load).

On `--device cuda` the model, the batches and the reference's matrices live on the GPU,
and every timed region (a training step, one reference pass) starts and ends with
torch.cuda.synchronize(), so both count finished GPU work at the same shapes and the
fraction means the same as on a CPU. Float32 throughout; the matmul precision setting
(TF32 or not) is printed and applies to both. `--json PATH` also writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import time

# OpenMP threads that sleep while waiting (instead of spinning) leave the cores to whoever
# else runs on them; on a shared 2-core machine this is worth 3x (set before torch loads
# libgomp; OMP_WAIT_POLICY=ACTIVE in the environment restores spinning).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from rasp_hydra.config import ModelConfig  # noqa: E402
from rasp_hydra.data import batches, build_splits  # noqa: E402
from rasp_hydra.model import Encoder  # noqa: E402
from rasp_hydra.tasks import get_task  # noqa: E402
from rasp_hydra.train import OptimizerConfig, attention_terms, make_optimizer, sequence_loss  # noqa: E402

CASES = {
    "a": ("reverse_100", 2, 1),
    "b": ("sort_by_freq_26_bos_with_attns", 3, 2),
}


def model_flops(cfg: ModelConfig, n_out: int, lengths: torch.Tensor) -> float:
    """Training FLOPs (forward + backward) for sequences of these real lengths."""
    d, ff, L = cfg.d_model, cfg.ff, cfg.layers
    weights = L * (4 * d * d + 2 * d * ff) + d * n_out  # matmul weights per token
    tokens = float(lengths.sum())
    sq = float((lengths.double() ** 2).sum())  # sum over sequences of n^2
    return 6 * weights * tokens + 12 * L * d * sq


class MatmulReference:
    """The model's own matrix products for one mean-sized batch, timed alone: per layer
    the q/k/v, output and feed-forward linears and the attention products (scores, mixing),
    each forward and in its two backward forms (dx = dy W^T, dW = x^T dy), plus the
    classifier. `once()` times one pass; the benchmark calls it between training steps so
    that both see the same machine load (a shared CPU drifts)."""

    def __init__(self, cfg: ModelConfig, n_out: int, batch: int, lengths: torch.Tensor,
                 device: str | torch.device = "cpu"):
        d, ff, H = cfg.d_model, cfg.ff, cfg.heads
        rows = round(batch * float(lengths.double().mean()))
        n = round(float(lengths.double().pow(2).mean().sqrt()))  # same sum of n^2
        lin = [(d, 3 * d), (d, d), (d, ff), (ff, d)] * cfg.layers + [(d, n_out)]
        self.mats = []
        for k, m in lin:
            self.mats += [((rows, k), (k, m)), ((rows, m), (m, k)), ((k, rows), (rows, m))]
        hs, bh = d // H, batch * H
        for _ in range(cfg.layers):
            self.mats += [((bh, n, hs), (bh, hs, n)), ((bh, n, n), (bh, n, hs)),  # fwd
                          ((bh, n, n), (bh, n, hs)), ((bh, hs, n), (bh, n, n)),  # bwd scores
                          ((bh, n, hs), (bh, hs, n)), ((bh, n, n), (bh, n, hs))]  # bwd mixing
        device = torch.device(device)
        self.mats = [(torch.randn(a, device=device), torch.randn(b, device=device))
                     for a, b in self.mats]
        self.sync = _synchronizer(device)
        self.flops = sum(2 * a.numel() * b.shape[-1] for a, b in self.mats)
        self.seconds = 0.0
        self.done = 0.0
        for a, b in self.mats:  # warm-up
            a @ b
        self.sync()

    def once(self):
        self.sync()
        t0 = time.perf_counter()
        for a, b in self.mats:
            a @ b
        self.sync()
        self.seconds += time.perf_counter() - t0
        self.done += self.flops

    @property
    def rate(self) -> float:
        return self.done / self.seconds


def _synchronizer(device: torch.device):
    """What to call before reading the clock: wait for the device's queued work."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def run_case(key: str, steps: int, warmup: int, train_size: int,
             max_seconds: float = 40.0, device: str = "cpu", d_model: int = 256,
             ff: int | None = None, max_len: int = 100) -> dict:
    name, layers, heads = CASES[key]
    dev = torch.device(device)
    sync = _synchronizer(dev)
    task = get_task(name)
    splits = build_splits(task, sizes={"train": train_size}, min_len=1, max_len=max_len)
    cfg = ModelConfig(layers=layers, heads=heads, d_model=d_model, ff=ff or 2 * d_model,
                      max_len=max_len + 1)
    torch.manual_seed(0)
    # initialised on the CPU, as train() does
    model = Encoder(cfg, task.vocab_size, task.n_out, task.pad_id).to(dev)
    opt = make_optimizer(model.parameters(), OptimizerConfig())
    sup = tuple(task.supervised_heads)
    sup_layers = sorted({h[0] for h in sup})
    it = batches(splits["train"], 50, shuffle=True, seed=0, epoch=1)
    ref = MatmulReference(cfg, task.n_out, 50, splits["train"].lengths, dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    real = padded = done = 0
    flops = dt = 0.0
    for i, (tokens, lengths, targets) in enumerate(it):
        if done == steps or (dt > max_seconds and done >= 5):  # a busy machine: stop early
            break
        if i >= warmup:
            ref.once()
        n_real, n_padded = int(lengths.sum()), tokens.numel()  # CPU tensors: no device sync
        step_flops = model_flops(cfg, task.n_out, lengths)
        sync()
        t0 = time.perf_counter()
        # the copy to the device is part of a training step (train() does it per batch)
        tokens, lengths, targets = (t.to(dev, non_blocking=True)
                                    for t in (tokens, lengths, targets))
        logits, attn, _ = model(tokens, lengths, need_attention=sup_layers)
        loss = sequence_loss(logits, targets, lengths).mean()
        if sup:
            t = attention_terms(task, tokens, lengths, attn, sup, True, False)
            loss = loss + 100.0 * t["sq_err"].mean() / t["n_elems"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()
        if i >= warmup:
            dt += time.perf_counter() - t0
            done += 1
            real += n_real
            padded += n_padded
            flops += step_flops
    rate = ref.rate
    peak = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None
    return {"case": key, "task": name, "layers": layers, "heads": heads, "d_model": d_model,
            "ff": cfg.ff, "max_len": max_len, "device": dev.type, "steps": done,
            "tokens_per_s": real / dt, "padding": 1 - real / padded,
            "model_gflops": flops / dt / 1e9, "matmul_gflops": rate / 1e9,
            "fraction": flops / dt / rate, "seconds": dt, "peak_memory_bytes": peak}


def describe_device(device: str) -> str:
    """One line about the machine the figures come from."""
    line = (f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"{torch.backends.cpu.get_cpu_capability()}, "
            f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, load average "
            + " ".join(f"{x:.1f}" for x in os.getloadavg()))
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        return (f"device cuda: {p.name}, {p.total_memory / 2**30:.0f} GiB, compute "
                f"capability {p.major}.{p.minor}, CUDA {torch.version.cuda}, float32 "
                f"matmul precision {torch.get_float32_matmul_precision()!r}; host: {line}")
    return (f"device cpu: {line} (other work on the cores slows the model's many small ops "
            "more than matmul)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=40, help="timed steps per case")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    p.add_argument("--cases", default="ab")
    p.add_argument("--train-size", type=int, default=5000)
    p.add_argument("--max-seconds", type=float, default=40.0,
                   help="stop a case's timing after this long (at least 5 steps)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--d-model", type=int, default=256, help="the paper's 256 by default")
    p.add_argument("--ff", type=int, default=None, help="default: 2 x d_model")
    p.add_argument("--max-len", type=int, default=100, help="lengths 1..MAX_LEN")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but torch sees no CUDA device here; use --device cpu.")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(describe_device(args.device))
    results = []
    for key in args.cases:
        r = run_case(key, args.steps, args.warmup, args.train_size, args.max_seconds,
                     args.device, args.d_model, args.ff, args.max_len)
        peak = ("" if r["peak_memory_bytes"] is None
                else f", peak memory {r['peak_memory_bytes'] / 2**20:,.0f} MiB")
        print(f"({r['case']}) {r['task']} {r['layers']}L{r['heads']}H d{r['d_model']} "
              f"ff{r['ff']} batch 50 on {r['device']}: "
              f"{r['tokens_per_s']:,.0f} real tokens/s, padding {r['padding']:.1%}, "
              f"model {r['model_gflops']:.1f} GFLOP/s = {r['fraction']:.0%} of matmul "
              f"{r['matmul_gflops']:.1f} GFLOP/s ({r['steps']} steps, {r['seconds']:.1f} s"
              f"{peak})")
        results.append(r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": describe_device(args.device), "cases": results}, f, indent=1)


if __name__ == "__main__":
    main()

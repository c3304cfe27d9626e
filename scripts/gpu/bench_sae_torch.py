#!/usr/bin/env python3
"""TopK SAE training speed in PyTorch, beside Loupe's (sae.TestGPUSpeed).

Two peers, on random activations already on the GPU, Adam, at the sizes of
issue 12's table:
  torch     a plain PyTorch TopK trainer: dense encoder, top-k, the latents
            scattered into a dense [rows, latents] matrix and a dense decoder
            GEMM, unit-norm decoder rows with the parallel gradient removed;
            fp32, and bf16 autocast;
  sparsify  EleutherAI sparsify 1.3.3's SparseCoder (its fused encoder, its
            Triton sparse decoder, its own bf16 autocast) driven by the steps
            of its trainer's loop (dead mask, AuxK, gradient projection,
            Adam, counters).
Each step ends by reading the FVU as a float, as sparsify's trainer does
(Loupe's step also downloads its statistics). Prints one line per run:
  sae-bench PEER d=D x=X k=K batch=N DTYPE tok/s=R limit_fraction=F
(F: of the encoder GEMM's limit at 790 TFLOP/s). Usage:
  bench_sae_torch.py [torch|sparsify|all] [small]
sparsify must be importable (pip install --target, then PYTHONPATH); its
package __init__ pulls in its CLI's dependencies (datasets, schedulefree), so
only sparsify.sparse_coder is imported.
"""
import os
import sys
import time
import types

import torch

SIZES = [(576, 16, 32, 4096), (576, 16, 32, 65536), (4096, 16, 64, 4096), (4096, 16, 64, 65536)]


def steps_for(n, d, S):
    if d * S > 1 << 25 and n > 8192:
        return 6
    return max(5, min(200, (1 << 22) // n))


def batches(n, d, count):
    g = torch.Generator(device="cuda").manual_seed(10)
    return [torch.randn(n, d, device="cuda", generator=g) for _ in range(count)]


def timed(step, xs, steps):
    """Seconds per step: 3 warm-up steps, then up to `steps` steps or 4 s."""
    for i in range(3):
        step(xs[i % len(xs)])
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    done = 0
    while done < steps and (done < 3 or time.perf_counter() - t0 < 4):
        step(xs[done % len(xs)])
        done += 1
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / done


def plain(d, S, k, n, bf16):
    w = torch.randn(S, d, device="cuda")
    w /= w.norm(dim=1, keepdim=True)
    W_enc = torch.nn.Parameter(w.clone())
    W_dec = torch.nn.Parameter(w.clone())
    b_enc = torch.nn.Parameter(torch.zeros(S, device="cuda"))
    b_dec = torch.nn.Parameter(torch.zeros(d, device="cuda"))
    params = [W_enc, b_enc, W_dec, b_dec]
    opt = torch.optim.Adam(params, lr=1e-4)

    def step(x):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            pre = torch.relu((x - b_dec) @ W_enc.T + b_enc)
            vals, idx = pre.topk(k, dim=-1, sorted=False)
            f = torch.zeros_like(pre).scatter(1, idx, vals)
            xhat = f @ W_dec + b_dec
        e = xhat.float() - x
        l2 = e.pow(2).sum()
        fvu = l2 / (x - x.mean(0)).pow(2).sum()
        float(fvu.detach())
        (l2 / n).backward()
        with torch.no_grad():
            W_dec.grad -= (W_dec.grad * W_dec).sum(1, keepdim=True) * W_dec
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            W_dec.div_(W_dec.norm(dim=1, keepdim=True))

    return step


def import_sparse_coder():
    for p in sys.path:
        if p and os.path.isfile(os.path.join(p, "sparsify", "sparse_coder.py")):
            pkg = types.ModuleType("sparsify")
            pkg.__path__ = [os.path.join(p, "sparsify")]
            sys.modules["sparsify"] = pkg
            from sparsify.config import SparseCoderConfig
            from sparsify.sparse_coder import SparseCoder

            return SparseCoder, SparseCoderConfig
    raise SystemExit("sparsify not found on sys.path (carry eai-sparsify 1.3.3 and set PYTHONPATH)")


def sparsify_step(d, S, k, n):
    SparseCoder, SparseCoderConfig = import_sparse_coder()
    sae = SparseCoder(d, SparseCoderConfig(expansion_factor=S // d, k=k), device="cuda")
    opt = torch.optim.Adam(sae.parameters(), lr=1e-4)
    since = torch.zeros(S, dtype=torch.long, device="cuda")
    did_fire = torch.zeros(S, dtype=torch.bool, device="cuda")

    def step(x):
        sae.set_decoder_norm_to_unit_norm()
        dead_mask = since > 10_000_000
        total_variance = (x - x.mean(0)).pow(2).sum()
        out = sae(x, y=x, dead_mask=dead_mask, total_variance=total_variance)
        did_fire[out.latent_indices.flatten()] = True
        float(out.fvu.detach())
        loss = out.fvu + (1 / 32) * out.auxk_loss
        loss.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()
        since.add_(n)
        since[did_fire] = 0
        did_fire.zero_()

    return step


def report(peer, d, x, k, n, dt, rate):
    limit = 790e12 / (2 * d * x * d)
    print(f"sae-bench {peer} d={d} x={x} k={k} batch={n} {dt} tok/s={rate:.0f} limit_fraction={rate / limit:.3f}", flush=True)


def main():
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    sizes = SIZES[:1] if "small" in sys.argv else SIZES
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}", flush=True)
    for d, x, k, n in sizes:
        S = d * x
        steps = steps_for(n, d, S)
        xs = batches(n, d, 2 if n * d > 1 << 26 else 4)
        if which in ("torch", "all") and n <= 4096:
            # the dense decoder's [rows, latents] matrices: the table
            # has plain PyTorch at 4096-token batches only
            for bf16 in (False, True):
                try:
                    per = timed(plain(d, S, k, n, bf16), xs, steps)
                    report("torch", d, x, k, n, "bf16" if bf16 else "fp32", n / per)
                except torch.OutOfMemoryError as e:
                    print(f"sae-bench torch d={d} batch={n}: out of memory: {e}", flush=True)
                torch.cuda.empty_cache()
        if which in ("sparsify", "all"):
            per = timed(sparsify_step(d, S, k, n), xs, steps)
            report("sparsify", d, x, k, n, "bf16", n / per)
            torch.cuda.empty_cache()
        del xs
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()

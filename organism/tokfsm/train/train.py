"""Train a TokFSM model with codebooks, as the paper's FSM configuration does.

    go run ./organism/tokfsm/cmd/genfsm -out .devcb/fsm.json -seed 42
    /work/venv/bin/python organism/tokfsm/train/train.py --fsm .devcb/fsm.json \
        --out organism/tokfsm/model

The reference configuration (taufeeque9/codebook-features,
codebook_features/config/fsm_main.yaml): a 4-layer GPT-NeoX (d_model 128,
4 heads, d_mlp 512, rotary base 10000, vocabulary of the 10 digits plus
<|endoftext|> = 10), codebooks of 1000 codes with k = 1 on every attention
head's pre-projection output (one per head) and on every MLP output, inner
product similarity, loss "aeloss", AdamW at a constant 1e-3, the model's
weights trained together with the codebooks, batches of 512 sequences of
128 tokens for 20000 steps on a GPU.

This script is Loupe's own (codebooks.py holds the layer). It runs on a CPU
in minutes, so it differs from the reference in scale, on purpose and said:
  * --steps, --batch and --seq-len default far below the reference's;
  * the model first trains --pretrain-steps without codebooks, then the
    codebooks are inserted, each initialised from activations of a batch
    (random rows, as the reference's dead-code replacement does), and the
    whole model trains on with them (the reference trains with codebooks
    from step 0 from random codes; it has k-means initialisation as an
    option). Dead codes are replaced every --replace-every steps from the
    current batch's inputs (the reference's replace_after_steps, 0 in its FSM
    configuration).
Everything random is seeded (--seed).

Writes to --out: config.json + model.safetensors (Hugging Face GPT-NeoX),
codebooks.json + codebooks.safetensors (Loupe's codebook layout), fsm.json,
metrics.json (losses, transition accuracy, tokens/s) and train.log.
"""
import argparse
import json
import math
import os
import random
import shutil
import time

import numpy as np
import torch
import torch.nn.functional as F
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

import codebooks as cbmod


class FSM:
    """The machine written by organism/tokfsm (Go), read from fsm.json."""

    def __init__(self, path):
        with open(path) as f:
            d = json.load(f)
        self.states, self.base, self.digits = d["states"], d["base"], d["digits"]
        self.next = [list(n) for n in d["next"]]
        self.allowed = np.zeros((self.states, self.states), dtype=bool)
        for s, n in enumerate(self.next):
            self.allowed[s, n] = True
        self.bos = self.base

    def tokens(self, s):
        out = []
        for _ in range(self.digits):
            out.append(s % self.base)
            s //= self.base
        return out[::-1]

    def batch(self, rng, n, seq_len):
        """n sequences: BOS then the digits of a random walk, cut to seq_len."""
        states = (seq_len + self.digits - 1) // self.digits
        out = np.empty((n, 1 + states * self.digits), dtype=np.int64)
        out[:, 0] = self.bos
        nxt = np.array(self.next)
        s = rng.integers(0, self.states, n)
        for i in range(states):
            if i > 0:
                s = nxt[s, rng.integers(0, nxt.shape[1], n)]
            v = s.copy()
            for d in reversed(range(self.digits)):
                out[:, 1 + i * self.digits + d] = v % self.base
                v //= self.base
        return torch.from_numpy(out[:, :seq_len])

    def transition_accuracy(self, seqs):
        """The reference's metric on generated sequences (BOS dropped)."""
        ok = total = 0
        for seq in seqs:
            digits = [t for t in seq[1:] if t < self.base]
            traj = [int("".join(map(str, digits[i:i + self.digits])), self.base)
                    for i in range(0, len(digits) - self.digits + 1, self.digits)]
            for a, b in zip(traj, traj[1:]):
                total += 1
                ok += bool(a < self.states and b < self.states and self.allowed[a, b])
        return ok / max(total, 1)


def make_codebooks(cfg, args):
    H, D = cfg.num_attention_heads, cfg.hidden_size
    cbs = []
    for layer in range(cfg.num_hidden_layers):
        cbs.append(cbmod.Codebook(f"blocks.{layer}.attn.hook_z", H, D // H, args.codes, args.k))
        cbs.append(cbmod.Codebook(f"blocks.{layer}.hook_mlp_out", 1, D, args.codes, args.k))
    return cbs


@torch.no_grad()
def capture(model, cbs, batch):
    """The normalised inputs [rows, G, d] every codebook sees on a batch."""
    for cb in cbs:
        cb.capture = True
    model(batch)
    out = {}
    for cb in cbs:
        cb.capture = False
        out[cb.hook] = cb.captured.reshape(-1, cb.groups, cb.dim)
        cb.captured = None
    return out


@torch.no_grad()
def init_from_data(model, cbs, batch):
    """Set every codebook's codes to random normalised inputs of one batch."""
    seen = capture(model, cbs, batch)
    for cb in cbs:
        n = seen[cb.hook]
        rows = torch.randint(0, n.shape[0], (cb.groups, cb.num_codes))
        for g in range(cb.groups):
            cb.codes[g] = n[rows[g], g] + 1e-3 * torch.randn(cb.num_codes, cb.dim)


@torch.no_grad()
def replace_dead(cb, n):
    """Codes unused since the last replacement get random rows of n."""
    replaced = 0
    n = n.reshape(-1, cb.groups, cb.dim)
    for g in range(cb.groups):
        dead = (cb.counts[g] == 0).nonzero().flatten()
        if len(dead):
            rows = torch.randint(0, n.shape[0], (len(dead),))
            cb.codes[g, dead] = n[rows, g] + 1e-4 * n[rows, g].norm(dim=-1, keepdim=True) * torch.randn(len(dead), cb.dim)
            replaced += len(dead)
    cb.counts.zero_()
    return replaced


def evaluate(model, fsm, rng, args, log):
    model.eval()
    with torch.no_grad():
        x = fsm.batch(rng, 256, args.seq_len)
        loss = model(x, labels=x).loss.item()
        start = torch.full((32, 1), fsm.bos)
        gen = model.generate(start, attention_mask=torch.ones_like(start), max_length=args.seq_len, do_sample=True,
                             top_k=0, pad_token_id=fsm.bos, bos_token_id=fsm.bos, eos_token_id=None)
        acc = fsm.transition_accuracy(gen.tolist())
    model.train()
    return loss, acc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fsm", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--pretrain-steps", type=int, default=1500)
    ap.add_argument("--steps", type=int, default=1500, help="steps with codebooks")
    ap.add_argument("--codes", type=int, default=1000)
    ap.add_argument("--k", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--replace-every", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", help="start from this plain model (a --steps 0 run's OUT/pretrain) instead of pretraining")
    ap.add_argument("--init-codebooks", help="with --init DIR (a codebook run's OUT): continue from DIR's codebooks too")
    ap.add_argument("--max-seconds", type=float, default=0, help="stop the codebook phase after this long (0: no limit)")
    ap.add_argument("--pretrain-max-seconds", type=float, default=0, help="stop the plain phase after this long (0: no limit)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    eval_rng = np.random.default_rng(args.seed + 1)
    os.makedirs(args.out, exist_ok=True)
    logf = open(os.path.join(args.out, "train.log"), "a")

    def log(msg):
        print(msg, flush=True)
        logf.write(msg + "\n")
        logf.flush()

    fsm = FSM(args.fsm)
    cfg = GPTNeoXConfig(vocab_size=fsm.base + 1, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=512, rotary_emb_base=10000, bos_token_id=fsm.bos, eos_token_id=fsm.bos,
                        max_position_embeddings=args.seq_len)
    cfg.architectures = ["GPTNeoXForCausalLM"]
    if args.init:
        model = GPTNeoXForCausalLM.from_pretrained(args.init, torch_dtype=torch.float32)
        assert model.config.vocab_size == fsm.base + 1
        cfg = model.config
        args.pretrain_steps = 0
    else:
        model = GPTNeoXForCausalLM(cfg)
    model.train()
    metrics = {"args": vars(args), "phases": []}

    def run_phase(name, steps, cbs, max_seconds):
        params = list(model.parameters()) + [p for cb in cbs for p in cb.parameters()]
        opt = torch.optim.AdamW(params, lr=args.lr)
        t0 = time.time()
        tokens = 0
        last = {}
        for step in range(1, steps + 1):
            x = fsm.batch(rng, args.batch, args.seq_len)
            out = model(x, labels=x)
            mse = sum((cb.mse for cb in cbs), torch.zeros(()))
            loss = out.loss + mse
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tokens += x.numel()
            late = step >= steps * 0.8 or (max_seconds and time.time() - t0 > 0.8 * max_seconds)
            if cbs and args.replace_every and step % args.replace_every == 0 and not late:
                seen = capture(model, cbs, x)
                last["replaced"] = sum(replace_dead(cb, seen[cb.hook]) for cb in cbs)
            elapsed = time.time() - t0
            if step % 20 == 0 or step == steps:
                log(f"{name} step {step} loss {out.loss.item():.4f} mse {mse.item():.4f} "
                    f"{tokens / elapsed:.0f} tok/s {last}")
            if max_seconds and elapsed > max_seconds:
                log(f"{name}: stopping at step {step}, {elapsed:.0f} s")
                break
        elapsed = time.time() - t0
        loss, acc = evaluate(model, fsm, eval_rng, args, log)
        log(f"{name} done: {step} steps, {elapsed:.0f} s, {tokens / elapsed:.0f} tok/s, eval loss {loss:.4f}, transition accuracy {acc:.4f}")
        metrics["phases"].append({"phase": name, "steps": step, "seconds": elapsed, "tokens_per_s": tokens / elapsed,
                                  "eval_loss": loss, "transition_accuracy": acc})

    if args.pretrain_steps > 0:
        run_phase("pretrain", args.pretrain_steps, [], args.pretrain_max_seconds)
        model.save_pretrained(os.path.join(args.out, "pretrain"), safe_serialization=True)
        log("saved the plain model to " + os.path.join(args.out, "pretrain"))
    if args.steps == 0:
        with open(os.path.join(args.out, "metrics_pretrain.json"), "w") as f:
            json.dump(metrics, f, indent=1)
        return
    if args.init_codebooks:
        cbs = cbmod.load(args.init_codebooks)
        cbmod.attach(model, cbs)
        log(f"continuing from the codebooks of {args.init_codebooks}")
    else:
        cbs = make_codebooks(cfg, args)
        cbmod.attach(model, cbs)
        model.eval()
        init_from_data(model, cbs, fsm.batch(rng, 512, args.seq_len))
    model.train()
    for cb in cbs:
        cb.train()
    run_phase("codebooks", args.steps, cbs, args.max_seconds)

    model.save_pretrained(args.out, safe_serialization=True)
    cbmod.save(cbs, args.out)
    shutil.copy(args.fsm, os.path.join(args.out, "fsm.json"))
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
        f.write("\n")
    log("saved " + args.out)


if __name__ == "__main__":
    main()

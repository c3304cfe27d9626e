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
or a GPU (--device). Two ways to train, both said in metrics.json:
  * --pretrain-steps 0 --code-init randn --replace-every 0 is the
    reference's recipe: codebooks from the first step, codes drawn from
    N(0, 1) (nn.Embedding's initialisation), no dead-code replacement,
    AdamW with weight decay 0.01 on the codes only (the reference's
    codebook_weight_decay; the model's weights have none, the Trainer's
    default), constant learning rate; --seq-len 128 --batch 512 as there.
    On a GPU the reference's scale is 20000 steps (1.3B tokens); --max-seconds
    stops earlier and the model is saved (the step count is in metrics.json).
  * the CPU recipe of the first committed model: the model first trains
    --pretrain-steps without codebooks, then the codebooks are inserted, each
    initialised from activations of a batch (--code-init data: random rows,
    as the reference's dead-code replacement does), and the whole model
    trains on with them; dead codes are replaced every --replace-every steps
    from the current batch's inputs (the reference's replace_after_steps,
    0 in its FSM configuration), not in the last 20% of the steps.
On a GPU the forward runs under bf16 autocast (the weights, the codes and
the saved files stay float32), the training sequences are drawn on the
device, and nothing in a step waits on the host except the logging.
--compile on (or auto: on a GPU) runs the step's forward and loss through
torch.compile: one graph with the codebook hooks (no graph breaks), the
same arithmetic (on the CPU four steps' losses agree with eager's to
3e-4: fused kernels round differently), 1.97x eager's tokens/s on an H200; the first
step compiles (36 s there). --save-optimizer writes the AdamW state, the
step count and the dead-code counts beside the model, and --resume DIR
continues such a run exactly where it stopped (scripts/gpu/tokfsm-long.sh
chains an eager and a compiled segment so).
Every --ap-every seconds (and at the end) the mean best-code average
precision over the FSM's states is logged (Loupe's definition, computed
here on the device; `loupe codebook eval` is the measure reported).
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

    def device_batches(self, gen, n, seq_len, device):
        """Like batch, drawn on the device with torch generator gen."""
        states = (seq_len + self.digits - 1) // self.digits
        nxt = torch.tensor(self.next, device=device)
        s = torch.randint(0, self.states, (n,), generator=gen, device=device)
        cols = [torch.full((n,), self.bos, dtype=torch.long, device=device)]
        place = torch.tensor([self.base ** (self.digits - 1 - d) for d in range(self.digits)], device=device)
        for i in range(states):
            if i > 0:
                s = nxt[s, torch.randint(0, nxt.shape[1], (n,), generator=gen, device=device)]
            cols.append((s.unsqueeze(1) // place) % self.base)
        return torch.cat([c.view(n, -1) for c in cols], dim=1)[:, :seq_len]

    def labels(self, x):
        """The state each position completes ([B, T], -1 where none)."""
        B, T = x.shape
        lab = torch.full((B, T), -1, dtype=torch.long, device=x.device)
        for end in range(self.digits, T, self.digits):
            v = torch.zeros(B, dtype=torch.long, device=x.device)
            for p in range(end - self.digits + 1, end + 1):
                v = v * self.base + x[:, p]
            lab[:, end] = v
        return lab

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
            cb.codes[g] = n[rows[g].to(n.device), g] + 1e-3 * torch.randn(cb.num_codes, cb.dim, device=n.device)


@torch.no_grad()
def replace_dead(cb, n):
    """Codes unused since the last replacement get random rows of n."""
    replaced = 0
    n = n.reshape(-1, cb.groups, cb.dim)
    for g in range(cb.groups):
        dead = (cb.counts[g] == 0).nonzero().flatten()
        if len(dead):
            rows = torch.randint(0, n.shape[0], (len(dead),), device=n.device)
            new = n[rows, g]
            cb.codes[g, dead] = new + 1e-4 * new.norm(dim=-1, keepdim=True) * torch.randn(len(dead), cb.dim, device=n.device)
            replaced += len(dead)
    cb.counts.zero_()
    return replaced


def set_mode(model, cbs, training):
    """The codebooks are no submodules of the model: switch them too."""
    model.train(training)
    for cb in cbs:
        cb.train(training)


def evaluate(model, cbs, fsm, rng, args, device):
    set_mode(model, cbs, False)
    with torch.no_grad():
        x = fsm.batch(rng, 256, args.seq_len).to(device)
        loss = model(x, labels=x).loss.item()
        start = torch.full((32, 1), fsm.bos, device=device)
        gen = model.generate(start, attention_mask=torch.ones_like(start), max_length=args.seq_len, do_sample=True,
                             top_k=0, pad_token_id=fsm.bos, bos_token_id=fsm.bos, eos_token_id=None)
        acc = fsm.transition_accuracy(gen.tolist())
    set_mode(model, cbs, True)
    return loss, acc


@torch.no_grad()
def state_ap(model, cbs, fsm, x):
    """Mean over states of the best code's average precision at detecting
    the state a position completes (score 1 where the code is chosen), as
    sae/codebook.MeasureStateAP defines it: recall*precision +
    (1 - recall)*(positives / positions) for a binary score."""
    set_mode(model, cbs, False)
    model(x)
    set_mode(model, cbs, True)
    lab = fsm.labels(x)
    keep = lab >= 0
    states = lab[keep]  # [N]
    N, S = states.numel(), fsm.states
    total = torch.bincount(states, minlength=S).double()  # [S]
    best = torch.zeros(S, dtype=torch.float64, device=x.device)
    for cb in cbs:
        ids = cb.last_ids[keep]  # [N, G, k]
        for g in range(cb.groups):
            for j in range(cb.k):
                code = ids[:, g, j]
                ok = code >= 0
                hits = torch.bincount(code[ok] * S + states[ok], minlength=cb.num_codes * S).view(cb.num_codes, S).double()
                fired = hits.sum(1, keepdim=True)
                recall = hits / total.clamp(min=1)
                prec = hits / fired.clamp(min=1)
                ap = recall * prec + (1 - recall) * (total / N)
                best = torch.maximum(best, ap.max(dim=0).values)
    present = total > 0
    return float(best[present].mean())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fsm", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="auto", help="cpu, cuda, or auto (cuda when there is one)")
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--pretrain-steps", type=int, default=1500)
    ap.add_argument("--steps", type=int, default=1500, help="steps with codebooks")
    ap.add_argument("--codes", type=int, default=1000)
    ap.add_argument("--k", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--code-init", choices=["data", "randn"], default="data",
                    help="codes from random inputs of a batch, or from N(0, 1) as the reference's nn.Embedding")
    ap.add_argument("--codebook-weight-decay", type=float, default=0.01, help="AdamW weight decay of the codes (the reference's)")
    ap.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay of the model's weights")
    ap.add_argument("--replace-every", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", help="start from this plain model (a --steps 0 run's OUT/pretrain) instead of pretraining")
    ap.add_argument("--init-codebooks", help="with --init DIR (a codebook run's OUT): continue from DIR's codebooks too")
    ap.add_argument("--max-seconds", type=float, default=0, help="stop the codebook phase after this long (0: no limit)")
    ap.add_argument("--pretrain-max-seconds", type=float, default=0, help="stop the plain phase after this long (0: no limit)")
    ap.add_argument("--log-every", type=int, default=20, help="steps between log lines")
    ap.add_argument("--ap-every", type=float, default=0, help="seconds between state-AP measures during training (0: only at the end)")
    ap.add_argument("--amp", choices=["auto", "bf16", "off"], default="auto", help="bf16 autocast (auto: on a GPU)")
    ap.add_argument("--compile", choices=["auto", "on", "off"], default="off",
                    help="torch.compile the forward and loss (auto: on a GPU); the same numbers, fewer kernels")
    ap.add_argument("--resume", help="continue a run of this script from its OUT: model, codebooks, AdamW state, "
                    "step count and dead-code counts (a folder saved with --save-optimizer)")
    ap.add_argument("--save-optimizer", action="store_true", help="also write optimizer.pt and resume.json, for --resume")
    ap.add_argument("--replace-stop", type=float, default=0.8,
                    help="no dead-code replacement after this fraction of the steps or of --max-seconds "
                         "(1: replace to the end, for a run that another --resume continues)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    if args.resume:
        args.init = args.init_codebooks = args.resume
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    amp = args.amp == "bf16" or (args.amp == "auto" and device.type == "cuda")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    rng = np.random.default_rng(args.seed)
    gen = torch.Generator(device=device)
    gen.manual_seed(args.seed)
    eval_rng = np.random.default_rng(args.seed + 1)
    os.makedirs(args.out, exist_ok=True)
    logf = open(os.path.join(args.out, "train.log"), "a")
    t_start = time.time()

    def log(msg):
        msg = f"[{time.time() - t_start:7.1f} s] {msg}"
        print(msg, flush=True)
        logf.write(msg + "\n")
        logf.flush()

    fsm = FSM(args.fsm)
    ap_x = fsm.batch(np.random.default_rng(args.seed + 2), 256, args.seq_len).to(device)
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
    model.to(device)
    model.train()
    log(f"device {device}{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}, "
        f"bf16 autocast {amp}, torch {torch.__version__}")
    metrics = {"args": vars(args), "device": str(device), "bf16_autocast": amp, "phases": [], "state_ap": []}

    def batches(n):
        """Training batches: on a GPU drawn there in blocks of 64."""
        if device.type == "cpu":
            while True:
                yield fsm.batch(rng, n, args.seq_len)
        while True:
            block = fsm.device_batches(gen, 64 * n, args.seq_len, device)
            yield from block.split(n)

    compiled = args.compile == "on" or (args.compile == "auto" and device.type == "cuda")
    metrics["compiled"] = compiled

    def forward_loss(x, cbs):
        """The step's forward: task loss plus the codebooks' reconstruction
        error (whose gradient reaches only the codes)."""
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(x, labels=x)
        mse = sum((cb.mse for cb in cbs), torch.zeros((), device=device))
        return out.loss + mse, out.loss, mse

    def run_phase(name, steps, cbs, max_seconds, resume=None):
        groups = [{"params": list(model.parameters()), "weight_decay": args.weight_decay}]
        if cbs:
            groups.append({"params": [p for cb in cbs for p in cb.parameters()], "weight_decay": args.codebook_weight_decay})
        opt = torch.optim.AdamW(groups, lr=args.lr, **({"fused": True} if device.type == "cuda" else {}))
        before = 0  # steps of the runs this one continues
        if resume:
            opt.load_state_dict(torch.load(os.path.join(resume, "optimizer.pt"), map_location=device))
            with open(os.path.join(resume, "resume.json")) as f:
                state = json.load(f)
            before = state["steps"]
            counts = torch.load(os.path.join(resume, "counts.pt"), map_location=device)
            for cb in cbs:
                cb.counts = counts[cb.hook].to(device)
            log(f"resuming {resume}: {before} steps before, AdamW state and dead-code counts restored")
        # One graph for the model with its codebook hooks (checked: no graph
        # breaks); the codebooks' attribute writes (mse, ids, counts) are
        # replayed by dynamo. The first step compiles.
        fwd = torch.compile(forward_loss) if compiled else forward_loss
        t0 = time.time()
        tokens = 0
        last = {}
        window = (t0, 0)
        next_ap = t0 + args.ap_every if args.ap_every else float("inf")
        data = batches(args.batch)
        step = 0
        first = None  # seconds of the first step (with compilation)
        for step in range(1, steps + 1):
            x = next(data)
            loss, ce, mse = fwd(x, cbs)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if first is None:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                first = time.time() - t0
                log(f"{name}: first step {first:.1f} s" + (" (torch.compile)" if compiled else ""))
                # the rate excludes the first step (compilation, warm-up)
                t_rate, tokens_rate = time.time(), tokens + x.numel()
                window = (t_rate, tokens_rate)
            tokens += x.numel()
            stop = args.replace_stop
            late = step >= steps * stop or (max_seconds and time.time() - t0 > stop * max_seconds)
            if cbs and args.replace_every and step % args.replace_every == 0 and not late:
                seen = capture(model, cbs, x)
                last["replaced"] = sum(replace_dead(cb, seen[cb.hook]) for cb in cbs)
            if step % args.log_every == 0 or step == steps:
                now = time.time()
                rate = (tokens - window[1]) / max(now - window[0], 1e-9)
                window = (now, tokens)
                log(f"{name} step {step} (in all {before + step}) loss {ce.item():.4f} mse {mse.item():.4f} "
                    f"{rate:.0f} tok/s (since the last line) "
                    f"{(tokens - tokens_rate) / max(now - t_rate, 1e-9):.0f} tok/s (phase, after the first step) {last}")
            if cbs and time.time() > next_ap:
                a = state_ap(model, cbs, fsm, ap_x)
                metrics["state_ap"].append({"step": step, "total_steps": before + step, "seconds": time.time() - t0,
                                            "tokens": tokens, "mean_best_code_ap": a})
                log(f"{name} step {step} (in all {before + step}): mean best-code state AP {a:.4f}")
                next_ap = time.time() + args.ap_every
            if max_seconds and time.time() - t0 > max_seconds:
                log(f"{name}: stopping at step {step}, {time.time() - t0:.0f} s (--max-seconds)")
                break
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.time() - t0
        rate = (tokens - tokens_rate) / max(time.time() - t_rate, 1e-9) if step > 1 else tokens / elapsed
        loss, acc = evaluate(model, cbs, fsm, eval_rng, args, device)
        rec = {"phase": name, "steps": step, "steps_before": before, "total_steps": before + step,
               "seconds": elapsed, "first_step_seconds": first, "tokens": tokens, "tokens_per_s": tokens / elapsed,
               "tokens_per_s_after_first_step": rate, "compiled": compiled,
               "eval_loss": loss, "transition_accuracy": acc}
        if cbs:
            rec["mean_best_code_ap"] = state_ap(model, cbs, fsm, ap_x)
        log(f"{name} done: {step} steps ({before + step} in all), {tokens} tokens, {elapsed:.0f} s, "
            f"{tokens / elapsed:.0f} tok/s ({rate:.0f} after the first step), "
            f"eval loss {loss:.4f}, transition accuracy {acc:.4f}" +
            (f", mean best-code state AP {rec['mean_best_code_ap']:.4f}" if cbs else ""))
        metrics["phases"].append(rec)
        if args.save_optimizer and cbs:
            torch.save(opt.state_dict(), os.path.join(args.out, "optimizer.pt"))
            torch.save({cb.hook: cb.counts for cb in cbs}, os.path.join(args.out, "counts.pt"))
            with open(os.path.join(args.out, "resume.json"), "w") as f:
                json.dump({"steps": before + step}, f)

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
        for cb in cbs:
            cb.to(device)
        cbmod.attach(model, cbs)
        log(f"continuing from the codebooks of {args.init_codebooks}")
    else:
        cbs = make_codebooks(cfg, args)
        for cb in cbs:
            cb.to(device)
        cbmod.attach(model, cbs)
        if args.code_init == "data":
            model.eval()
            init_from_data(model, cbs, fsm.batch(rng, 512, args.seq_len).to(device))
    set_mode(model, cbs, True)
    run_phase("codebooks", args.steps, cbs, args.max_seconds, resume=args.resume)

    model.save_pretrained(args.out, safe_serialization=True)
    cbmod.save(cbs, args.out)
    shutil.copy(args.fsm, os.path.join(args.out, "fsm.json"))
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
        f.write("\n")
    log("saved " + args.out)


if __name__ == "__main__":
    main()

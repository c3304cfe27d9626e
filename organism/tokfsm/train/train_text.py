"""Train a one-layer story model with per-head codebooks, the paper's TinyStories setting.

    # here (CPU): split the stories and train the tokenizer
    /work/venv/bin/python organism/tokfsm/train/train_text.py prepare \
        --corpus stories.txt --out DIR
    # on a GPU: pretrain the plain model, then fine-tune it with codebooks
    python3 organism/tokfsm/train/train_text.py train --data DIR --out MODEL

What the paper did (taufeeque9/codebook-features: tutorials/code_intervention.ipynb,
the model card of taufeeque/TinyStories-1Layer-21M-Codebook, config/main.yaml):
it fine-tuned roneneldan/TinyStories-1Layer-21M (GPT-Neo, one layer, d_model
1024, 16 heads of 64) on TinyStories with a codebook on every attention
head's pre-projection output ("attn_preproj", one codebook per head; the
tutorial's code ids reach 24,184, so at least 24,185 codes a head; at
least 8 codes are active a head, since the tutorial forces 8 codes of one
head in 8 slots), loss "aeloss", Adam at 5e-4 with a linear schedule and 5%
warm-up, batches of 96, 100,000 steps.

What this script does, and why it differs: Hugging Face is out of reach,
so neither the pretrained model nor the dataset can be had; what there is
is about 4 MB of TinyStories text (5,511 stories, lower-cased by whoever
committed it). So the model is trained here from scratch, and smaller to
suit 1M tokens: GPT-NeoX (the architecture Loupe and train.py share),
one layer, d_model 512, 8 heads of 64 (the paper's head width), MLP 2048,
a byte-level BPE of 4,096 tokens trained on the training stories
(`prepare`), <|endoftext|> (id 0) before every story as GPT-Neo's BOS. The
plain model trains first (the paper's starting point is a pretrained
model); then a codebook per head at blocks.0.attn.hook_z (--codes codes,
k = --k, input layer norm, inner-product ranking of unit codes, mean of the
k codes: codebooks.py, the same layer as the TokFSM model's) is inserted,
its codes initialised from activations, and the whole model trains on with
"aeloss"; dead codes are replaced every --replace-every steps (Loupe's
departure, as in train.py). bf16 autocast on a GPU; files float32.

Writes to --out: config.json and model shards (safetensors, at most
--shard-mb each, so that every file fits the device's 16 MiB return
limit), codebooks.json, codebooks.safetensors, tokenizer.json, metrics.json
and train.log.
"""
import argparse
import json
import math
import os
import random
import re
import shutil
import time

import numpy as np
import torch

BOS = "<|endoftext|>"


def split_stories(text):
    """Stories are separated by a single newline; paragraphs by two."""
    return [s.strip() for s in re.split(r"(?<!\n)\n(?!\n)", text) if s.strip()]


def prepare(args):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    with open(args.corpus, encoding="utf-8") as f:
        stories = split_stories(f.read())
    rng = random.Random(args.seed)
    order = list(range(len(stories)))
    rng.shuffle(order)
    n_held = max(1, int(len(stories) * args.heldout))
    held = sorted(order[:n_held])
    train = sorted(order[n_held:])
    os.makedirs(args.out, exist_ok=True)
    # One story a line (newlines inside a story escaped as \n in JSON).
    for name, idx in (("train.jsonl", train), ("heldout.jsonl", held)):
        with open(os.path.join(args.out, name), "w", encoding="utf-8") as f:
            for i in idx:
                f.write(json.dumps({"text": stories[i]}) + "\n")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=args.vocab, special_tokens=[BOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator((stories[i] for i in train), trainer=trainer)
    tok.save(os.path.join(args.out, "tokenizer.json"))
    n_tok = sum(len(tok.encode(stories[i]).ids) + 1 for i in train)
    info = {"stories": len(stories), "train_stories": len(train), "heldout_stories": len(held),
            "vocab": tok.get_vocab_size(), "train_tokens": n_tok, "seed": args.seed}
    with open(os.path.join(args.out, "data.json"), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    print(json.dumps(info))


def load_tokens(path, tok, bos):
    """Every story as BOS + its tokens, concatenated (run_clm's group_texts
    concatenates too; the BOS marks where a story starts)."""
    ids = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            ids.append(bos)
            ids.extend(tok.encode(json.loads(line)["text"]).ids)
    return torch.tensor(ids, dtype=torch.long)


def train(args):
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import codebooks as cbmod
    from tokenizers import Tokenizer
    from train import replace_dead  # train.py's dead-code replacement, shared
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() and args.device != "cpu" else "cpu")
    amp = device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    else:
        torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    logf = open(os.path.join(args.out, "train.log"), "a")
    t_start = time.time()

    def log(msg):
        msg = f"[{time.time() - t_start:7.1f} s] {msg}"
        print(msg, flush=True)
        logf.write(msg + "\n")
        logf.flush()

    tok = Tokenizer.from_file(os.path.join(args.data, "tokenizer.json"))
    bos = tok.token_to_id(BOS)
    train_ids = load_tokens(os.path.join(args.data, "train.jsonl"), tok, bos)
    held_ids = load_tokens(os.path.join(args.data, "heldout.jsonl"), tok, bos)
    T = args.seq_len
    n_train = (len(train_ids) - 1) // T
    held = held_ids[: (len(held_ids) // T) * T].view(-1, T).to(device)
    train_ids = train_ids.to(device)
    log(f"device {device}, bf16 autocast {amp}, {len(train_ids)} training tokens ({n_train} windows of {T}), "
        f"{held.numel()} held-out tokens, torch {torch.__version__}")

    cfg = GPTNeoXConfig(vocab_size=tok.get_vocab_size(), hidden_size=args.d_model, num_hidden_layers=args.layers,
                        num_attention_heads=args.heads, intermediate_size=4 * args.d_model, rotary_emb_base=10000,
                        bos_token_id=bos, eos_token_id=bos, max_position_embeddings=args.max_pos,
                        hidden_dropout=args.dropout, attention_dropout=args.dropout,
                        use_parallel_residual=args.parallel_residual == "on")
    cfg.architectures = ["GPTNeoXForCausalLM"]
    model = GPTNeoXForCausalLM(cfg).to(device)
    metrics = {"args": vars(args), "device": str(device), "phases": []}
    gen = torch.Generator(device=device)
    gen.manual_seed(args.seed)

    def batch():
        # random windows of the concatenated stories (an epoch is n_train windows)
        start = torch.randint(0, len(train_ids) - T - 1, (args.batch,), generator=gen, device=device)
        return train_ids[start.unsqueeze(1) + torch.arange(T, device=device)]

    def set_mode(cbs, training):
        model.train(training)
        for cb in cbs:
            cb.train(training)

    @torch.no_grad()
    def held_loss(cbs):
        set_mode(cbs, False)
        tot, n = 0.0, 0
        for x in held.split(64):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                tot += model(x, labels=x).loss.float().item() * x.shape[0]
            n += x.shape[0]
        set_mode(cbs, True)
        return tot / max(n, 1)

    def phase(name, cbs, epochs, lr, max_seconds):
        steps = max(1, int(epochs * n_train / args.batch))
        groups = [{"params": list(model.parameters()), "weight_decay": 0.0}]
        if cbs:
            groups.append({"params": [p for cb in cbs for p in cb.parameters()], "weight_decay": 0.01})
        opt = torch.optim.AdamW(groups, lr=lr)
        warm = max(1, int(0.05 * steps))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(steps - warm, 1))))
        set_mode(cbs, True)
        t0, tokens, step = time.time(), 0, 0
        replaced = 0
        # 1M tokens overfit a 7M-parameter model within a few epochs: the
        # held-out loss is measured every --eval-every steps and the best
        # state is the phase's result.
        best = (float("inf"), 0, None)
        curve = []
        t_eval = 0.0  # seconds spent on held-out losses, not in the rate
        for step in range(1, steps + 1):
            x = batch()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                ce = model(x, labels=x).loss
            mse = sum((cb.mse for cb in cbs), torch.zeros((), device=device))
            loss = ce + mse
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tokens += x.numel()
            if cbs and args.replace_every and step % args.replace_every == 0 and step < 0.8 * steps:
                with torch.no_grad():
                    for cb in cbs:
                        cb.capture = True
                    model(x)
                    for cb in cbs:
                        cb.capture = False
                        replaced += replace_dead(cb, cb.captured)
                        cb.captured = None
            if step % args.log_every == 0 or step == steps:
                log(f"{name} step {step}/{steps} loss {ce.item():.4f} mse {mse.item():.4f} "
                    f"{tokens / (time.time() - t0 - t_eval):.0f} tok/s, codes replaced so far {replaced}")
            over = max_seconds and time.time() - t0 > max_seconds
            if step % args.eval_every == 0 or step == steps or over:
                te = time.time()
                hl = held_loss(cbs)
                curve.append({"step": step, "tokens": tokens, "heldout_loss": hl})
                if hl < best[0]:
                    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    for cb in cbs:
                        state.update({cb.hook + "/" + k: v.detach().clone() for k, v in cb.state_dict().items()})
                    best = (hl, step, state)
                log(f"{name} step {step}: held-out loss {hl:.4f} (best {best[0]:.4f} at step {best[1]})")
                t_eval += time.time() - te
            if over:
                log(f"{name}: stopping at step {step} of {steps} (--max-seconds)")
                break
        if best[2] is not None:
            state = best[2]
            model.load_state_dict({k: v for k, v in state.items() if "/" not in k})
            for cb in cbs:
                cb.load_state_dict({k.split("/", 1)[1]: v for k, v in state.items() if k.startswith(cb.hook + "/")})
            log(f"{name}: kept the state of step {best[1]} (held-out loss {best[0]:.4f})")
        if device.type == "cuda":
            torch.cuda.synchronize()
        secs = time.time() - t0 - t_eval
        hl = held_loss(cbs)
        rec = {"phase": name, "steps": step, "planned_steps": steps, "tokens": tokens, "seconds": secs,
               "tokens_per_s": tokens / secs, "heldout_loss": hl, "kept_step": best[1], "codes_replaced": replaced,
               "curve": curve}
        if cbs:
            set_mode(cbs, False)
            with torch.no_grad():
                used = 0
                for cb in cbs:
                    cb.counts = torch.zeros_like(cb.counts)
                    cb.train(True)  # counts are kept in training mode only
                for x in held.split(64):
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                        model(x)
                for cb in cbs:
                    used += int((cb.counts > 0).sum())
                rec["heldout_dead_fraction"] = 1 - used / sum(cb.groups * cb.num_codes for cb in cbs)
            set_mode(cbs, True)
        log(f"{name} done: {json.dumps(rec)}")
        metrics["phases"].append(rec)

    phase("pretrain", [], args.pretrain_epochs, args.lr, args.pretrain_max_seconds)
    H, D = cfg.num_attention_heads, cfg.hidden_size
    cbs = [cbmod.Codebook(f"blocks.{l}.attn.hook_z", H, D // H, args.codes, args.k) for l in range(cfg.num_hidden_layers)]
    for cb in cbs:
        cb.to(device)
    cbmod.attach(model, cbs)
    with torch.no_grad():
        set_mode(cbs, False)
        for cb in cbs:
            cb.capture = True
        xs = torch.cat([batch() for _ in range(max(1, 4096 // args.batch))])
        model(xs[: max(1, 65536 // T)])
        for cb in cbs:
            cb.capture = False
            n = cb.captured.reshape(-1, cb.groups, cb.dim)
            rows = torch.randint(0, n.shape[0], (cb.groups, cb.num_codes), generator=gen, device=device)
            for g in range(cb.groups):
                cb.codes[g] = n[rows[g], g] + 1e-3 * torch.randn(cb.num_codes, cb.dim, device=device)
            cb.captured = None
    hl = held_loss(cbs)
    log(f"codebooks inserted (codes from activations): held-out loss {hl:.4f}")
    metrics["heldout_loss_codebooks_inserted"] = hl
    phase("codebooks", cbs, args.epochs, args.codebook_lr, args.max_seconds)

    for cb in cbs:
        cb.cpu()
    model.cpu()
    model.save_pretrained(args.out, safe_serialization=True, max_shard_size=f"{args.shard_mb}MB")
    cbmod.save(cbs, args.out)
    shutil.copy(os.path.join(args.data, "tokenizer.json"), os.path.join(args.out, "tokenizer.json"))
    metrics["seconds"] = time.time() - t_start
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
        f.write("\n")
    log("saved " + args.out)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--corpus", required=True, help="stories, one per line (paragraphs separated by blank lines)")
    p.add_argument("--out", required=True)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--heldout", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("train")
    t.add_argument("--data", required=True, help="a prepare run's DIR")
    t.add_argument("--out", required=True)
    t.add_argument("--device", default="auto")
    t.add_argument("--seq-len", type=int, default=256)
    t.add_argument("--max-pos", type=int, default=512)
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--d-model", type=int, default=512)
    t.add_argument("--heads", type=int, default=8)
    t.add_argument("--layers", type=int, default=1)
    t.add_argument("--pretrain-epochs", type=float, default=8)
    t.add_argument("--epochs", type=float, default=8, help="epochs with codebooks")
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--codebook-lr", type=float, default=5e-4, help="the paper's TinyStories learning rate")
    t.add_argument("--codes", type=int, default=4096)
    t.add_argument("--k", type=int, default=8)
    t.add_argument("--replace-every", type=int, default=50)
    t.add_argument("--pretrain-max-seconds", type=float, default=0)
    t.add_argument("--max-seconds", type=float, default=0)
    t.add_argument("--log-every", type=int, default=50)
    t.add_argument("--eval-every", type=int, default=100, help="steps between held-out losses (the best state is kept)")
    t.add_argument("--parallel-residual", choices=["on", "off"], default="on",
                   help="GPT-NeoX's parallel attention and MLP (on), or GPT-Neo's sequential block (off: the MLP reads the attention's output)")
    t.add_argument("--dropout", type=float, default=0.1, help="hidden and attention dropout while training")
    t.add_argument("--shard-mb", type=int, default=15)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    prepare(args) if args.cmd == "prepare" else train(args)


if __name__ == "__main__":
    main()

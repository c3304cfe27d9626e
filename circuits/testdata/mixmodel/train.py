"""Train the mixture IOI model: IOI among unrelated work.

The toy IOI model (../ioimodel) is trained on IOI alone, with its loss on the
answer only, so each of its heads exists for IOI and computes nothing at any
other position. GPT-2's heads, against which O'Neill and Bui score their SAE
method, are trained as a language model on every position of varied text,
and most of them do work that has nothing to do with IOI. This model is
trained the GPT-2 way on a closed vocabulary: next-token loss on every
position of a mixture of

- IOI prompts, the toy's two templates and 20 names, continued with the
  indirect object (half the sequences);
- repeated spans: a random span of filler words and names, then the same
  span again (a quarter): only an induction mechanism predicts the second
  half;
- text from a fixed random bigram chain over the filler words (a quarter):
  only the previous token predicts the next.

A 4-layer GPT-2 (d_model 64, 4 heads). Everything is seeded and
single-threaded: a rerun writes the same weights.

With --them, a third of the IOI sentences are ABC sentences (three distinct
names) continued by "them": the model must then tell whether the third name
repeats one of the first two before it names the indirect object, as a
reader of natural text must (the toy model and the plain mixture can
answer by position alone: copy the first two names, suppress the third).
That is the model in ../dupmodel.

With --attn-only as well, every MLP's weights are zero and frozen (GELU(0)
is 0, so each MLP adds exactly nothing): the comparison must then be made
by attention heads, as in GPT-2's IOI circuit (duplicate-token and
S-inhibition heads), not by an MLP. That is the model in ../attnmodel.

    /work/venv/bin/python circuits/testdata/mixmodel/train.py [--them [--attn-only]] [OUTDIR]

writes config.json, model.safetensors, vocab.json, task.jsonl (clean IOI
prompts with their ABC corruption, as ../ioimodel/task.jsonl) and
metrics.json next to this file. CPU, a few minutes.
"""
import json
import os
import random
import sys

import torch
from transformers import GPT2Config, GPT2LMHeadModel

ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
THEM = "--them" in sys.argv[1:]
ATTN_ONLY = "--attn-only" in sys.argv[1:]
DEFAULT = "attnmodel" if ATTN_ONLY else "dupmodel" if THEM else "mixmodel"
HERE = ARGS[0] if ARGS else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", DEFAULT)
# Names keep the toy model's ids 1..20 (the Go tests' name list relies on it).
NAMES = ["Mary", "John", "Anna", "Paul", "Kate", "Mark", "Lisa", "Tom", "Emma", "Sam",
         "Rose", "Jack", "Lucy", "Adam", "Nina", "Leo", "Ruth", "Ben", "Ivy", "Dan"]
PLACES = ["store", "park", "school", "office", "beach", "garden"]
OBJECTS = ["drink", "ball", "book", "pen", "cake", "key"]
FILLER = [f"w{i}" for i in range(24)]
WORDS = (["<bos>"] + NAMES + ["when", "and", "went", "to", "the", ",", "gave", "a",
                              "then", "had", "lunch", "at", ".", "handed", "it"]
         + PLACES + OBJECTS + FILLER + (["them"] if THEM else []))
ID = {w: i for i, w in enumerate(WORDS)}
TEMPLATES = [
    "<bos> when {A} and {B} went to the {P} , {C} gave a {O} to",
    "<bos> then {A} and {B} had lunch at the {P} . {C} handed it to",
]
SEQ = 16  # every sequence: BOS + 15 tokens (an IOI prompt is 15, its answer the 16th)


def ioi(rng, template, order):
    io, s, x, y, z = rng.sample(NAMES, 5)
    p, o = rng.choice(PLACES), rng.choice(OBJECTS)
    a, b = (io, s) if order == "ABBA" else (s, io)
    clean = TEMPLATES[template].format(A=a, B=b, C=s, P=p, O=o)
    corrupt = TEMPLATES[template].format(A=x, B=y, C=z, P=p, O=o)
    return clean, corrupt, io, s


def ids(text):
    return [ID[w] for w in text.split()]


def repeated(rng):
    # BOS, a span of 7 (filler and names), the span again, one more token of
    # it: 16 tokens.
    span = [ID[w] for w in rng.choices(FILLER + NAMES, k=7)]
    return [0] + span + span + span[:1]


def bigram_chain(seed):
    # Each filler word is followed by one of three others, with fixed
    # probabilities: a previous-token task.
    g = random.Random(seed)
    return {w: (g.sample(FILLER, 3), [0.6, 0.3, 0.1]) for w in FILLER}


def bigram_text(rng, chain):
    w = rng.choice(FILLER)
    out = [0, ID[w]]
    while len(out) < SEQ:
        nxt, p = chain[w]
        w = rng.choices(nxt, weights=p)[0]
        out.append(ID[w])
    return out


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    rng = random.Random(0)
    chain = bigram_chain(7)
    cfg = GPT2Config(vocab_size=len(WORDS), n_positions=32, n_embd=64, n_layer=4, n_head=4,
                     n_inner=256, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     bos_token_id=0, eos_token_id=0, tie_word_embeddings=True)
    model = GPT2LMHeadModel(cfg)
    if ATTN_ONLY:
        for blk in model.transformer.h:
            for p in blk.mlp.parameters():
                p.requires_grad_(False)
                p.zero_()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3, weight_decay=0.01)
    steps, batch = 5000, 128
    for step in range(steps):
        xs = []
        for i in range(batch):
            kind = i % 4
            if kind < 2:
                clean, corrupt, io, _ = ioi(rng, rng.randrange(2), rng.choice(["ABBA", "BABA"]))
                if THEM and rng.random() < 1 / 3:
                    xs.append(ids(corrupt) + [ID["them"]])
                else:
                    xs.append(ids(clean) + [ID[io]])
            elif kind == 2:
                xs.append(repeated(rng))
            else:
                xs.append(bigram_text(rng, chain))
        x = torch.tensor(xs)
        logits = model(x[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 250 == 0 or step == steps - 1:
            print(f"step {step} loss {loss.item():.4f}", flush=True)
    model.eval()
    test = random.Random(1)
    rows, right, gap = [], 0, 0.0
    with torch.no_grad():
        for i in range(200):
            clean, corrupt, io, s = ioi(test, i % 2, ["ABBA", "BABA"][(i // 2) % 2])
            lg = model(torch.tensor([ids(clean)])).logits[0, -1]
            right += int(lg.argmax().item() == ID[io])
            gap += (lg[ID[io]] - lg[ID[s]]).item()
            rows.append({"clean": clean, "corrupt": corrupt, "answer": io, "wrong": s,
                         "clean_ids": ids(clean), "corrupt_ids": ids(corrupt),
                         "answer_id": ID[io], "wrong_id": ID[s],
                         "template": ["ABBA", "BABA"][(i // 2) % 2]})
        # The other tasks, held out: induction accuracy on the repeated
        # span's second half, and the bigram text's next-token accuracy
        # against the chain's most likely successor.
        rep = torch.tensor([repeated(test) for _ in range(200)])
        pred = model(rep[:, :-1]).logits.argmax(-1)
        induction = (pred[:, 8:] == rep[:, 9:]).float().mean().item()
        big = torch.tensor([bigram_text(test, chain) for _ in range(200)])
        pred = model(big[:, :-1]).logits.argmax(-1)
        best = torch.tensor([[ID[chain[WORDS[t]][0][0]] for t in row[1:-1].tolist()] for row in big])
        bigram = (pred[:, 1:] == best).float().mean().item()
        # With --them: how often an ABC prompt is continued by "them".
        them = None
        if THEM:
            abc = torch.tensor([ids(r["corrupt"]) for r in rows])
            them = (model(abc).logits[:, -1].argmax(-1) == ID["them"]).float().mean().item()
    print(f"held-out IOI accuracy {right / 200:.3f}, mean logit difference {gap / 200:.3f}; "
          f"induction accuracy {induction:.3f}; bigram accuracy {bigram:.3f}; ABC prompts continued by them {them}")
    model.save_pretrained(HERE, safe_serialization=True)
    with open(os.path.join(HERE, "vocab.json"), "w") as f:
        json.dump(WORDS, f)
    with open(os.path.join(HERE, "task.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    with open(os.path.join(HERE, "metrics.json"), "w") as f:
        json.dump({"ioi_accuracy": right / 200, "ioi_mean_logit_diff": gap / 200,
                   "induction_accuracy": induction, "bigram_accuracy": bigram, "abc_them": them,
                   "steps": steps, "final_loss": loss.item()}, f, indent=1)


if __name__ == "__main__":
    main()

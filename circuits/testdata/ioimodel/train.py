"""Train the toy IOI model that Loupe's circuit-discovery tests score against.

A 3-layer GPT-2 (d_model 64, 4 heads) learns indirect object identification
on a closed vocabulary: "when A and B went to the store , B gave a ball to"
-> A, in the two orders (ABBA, BABA) and two templates of different lengths.
The loss is on the answer position only, so the model has nothing else to
learn. Everything is seeded and single-threaded: a rerun writes the same
weights.

    /work/venv/bin/python circuits/testdata/ioimodel/train.py

writes config.json, model.safetensors, vocab.json and task.jsonl (clean
prompts, their ABC corruption with three distinct names, the answer and the
subject token ids) next to this file. CPU, about a minute.
"""
import json
import os
import random
import sys

import torch
from transformers import GPT2Config, GPT2LMHeadModel

# The output folder: this file's own, or the first argument (to check that
# a rerun gives the same bytes).
HERE = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
NAMES = ["Mary", "John", "Anna", "Paul", "Kate", "Mark", "Lisa", "Tom", "Emma", "Sam",
         "Rose", "Jack", "Lucy", "Adam", "Nina", "Leo", "Ruth", "Ben", "Ivy", "Dan"]
PLACES = ["store", "park", "school", "office", "beach", "garden"]
OBJECTS = ["drink", "ball", "book", "pen", "cake", "key"]
WORDS = ["<bos>"] + NAMES + ["when", "and", "went", "to", "the", ",", "gave", "a",
                             "then", "had", "lunch", "at", ".", "handed", "it"] + PLACES + OBJECTS
ID = {w: i for i, w in enumerate(WORDS)}
TEMPLATES = [
    "<bos> when {A} and {B} went to the {P} , {C} gave a {O} to",
    "<bos> then {A} and {B} had lunch at the {P} . {C} handed it to",
]


def prompt(rng, template, order):
    io, s, x, y, z = rng.sample(NAMES, 5)
    p, o = rng.choice(PLACES), rng.choice(OBJECTS)
    a, b = (io, s) if order == "ABBA" else (s, io)
    clean = TEMPLATES[template].format(A=a, B=b, C=s, P=p, O=o)
    # The ABC corruption: three names no clean name shares, so nothing tells
    # the model which one to say.
    corrupt = TEMPLATES[template].format(A=x, B=y, C=z, P=p, O=o)
    return clean, corrupt, io, s


def ids(text):
    return [ID[w] for w in text.split()]


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    rng = random.Random(0)
    cfg = GPT2Config(vocab_size=len(WORDS), n_positions=32, n_embd=64, n_layer=3, n_head=4,
                     n_inner=128, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     bos_token_id=0, eos_token_id=0, tie_word_embeddings=True)
    model = GPT2LMHeadModel(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    steps, batch = 3000, 128
    for step in range(steps):
        template = step % 2  # one template per batch: no padding
        xs, ys = [], []
        for _ in range(batch):
            clean, _, io, _ = prompt(rng, template, rng.choice(["ABBA", "BABA"]))
            xs.append(ids(clean))
            ys.append(ID[io])
        x = torch.tensor(xs)
        logits = model(x).logits[:, -1]
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor(ys))
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
            clean, corrupt, io, s = prompt(test, i % 2, ["ABBA", "BABA"][(i // 2) % 2])
            lg = model(torch.tensor([ids(clean)])).logits[0, -1]
            right += int(lg.argmax().item() == ID[io])
            gap += (lg[ID[io]] - lg[ID[s]]).item()
            rows.append({"clean": clean, "corrupt": corrupt, "answer": io, "wrong": s,
                         "clean_ids": ids(clean), "corrupt_ids": ids(corrupt),
                         "answer_id": ID[io], "wrong_id": ID[s],
                         "template": ["ABBA", "BABA"][(i // 2) % 2]})
    print(f"held-out accuracy {right / 200:.3f}, mean logit difference {gap / 200:.3f}")
    model.save_pretrained(HERE, safe_serialization=True)
    with open(os.path.join(HERE, "vocab.json"), "w") as f:
        json.dump(WORDS, f)
    with open(os.path.join(HERE, "task.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    with open(os.path.join(HERE, "metrics.json"), "w") as f:
        json.dump({"accuracy": right / 200, "mean_logit_diff": gap / 200, "steps": steps,
                   "final_loss": loss.item()}, f, indent=1)


if __name__ == "__main__":
    main()

"""Reference vectors for circuits.PaperSAE: the autoencoder of O'Neill and
Bui's code (src/sae.py and src/train.py of charlieoneill11/sae-circuits, on
the sparse_autoencoder library's unit-norm linear layer), written out here
in PyTorch as that code defines it:

- a tied bias b subtracted before the encoder and added after the decoder
  (zero at the start: the code passes no geometric median);
- encoder Linear(d, latents) and decoder Linear(latents, d, bias=False)
  whose weights ([out, in]) are normal then normalised along the last
  dimension, renormalised (under no_grad, in place) at the start of every
  forward, and whose gradients lose their component along each row (a
  backward hook); the encoder bias starts uniform in +-1/sqrt(d);
- loss = mse_loss(x_hat, x) + lambda * mean over rows of ||f||_1;
- full-batch Adam (PyTorch defaults) for E epochs.

It writes sae_paper.json: the initial parameters, the input, and after
training the parameters, the last loss and the latent activations of the
input (through one more forward, as the code's evaluation does).

    /work/venv/bin/python circuits/testdata/sae_paper.py
"""
import json
import math
import os

import torch

torch.set_num_threads(1)
N, D, L, EPOCHS, LR, LAM = 24, 6, 10, 40, 1e-2, 0.02


class UnitRows(torch.nn.Module):
    def __init__(self, fan_in, fan_out, bias):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(fan_out, fan_in))
        with torch.no_grad():
            self.weight.copy_(torch.nn.functional.normalize(self.weight, dim=-1))
        self.bias = None
        if bias:
            bound = 1 / math.sqrt(fan_in)
            self.bias = torch.nn.Parameter(torch.empty(fan_out).uniform_(-bound, bound))
        self.weight.register_hook(self.off_rows)

    def off_rows(self, g):
        dot = (g * self.weight).sum(dim=-1, keepdim=True)
        return g - dot * self.weight / self.weight.norm(dim=-1, keepdim=True)

    def forward(self, x):
        with torch.no_grad():
            self.weight.copy_(torch.nn.functional.normalize(self.weight, dim=-1))
        return torch.nn.functional.linear(x, self.weight, self.bias)


class SAE(torch.nn.Module):
    def __init__(self, d, latents):
        super().__init__()
        self.b = torch.nn.Parameter(torch.zeros(d))
        self.enc = UnitRows(d, latents, True)
        self.dec = UnitRows(latents, d, False)

    def forward(self, x):
        f = torch.relu(self.enc(x - self.b))
        return f, self.dec(f) + self.b


def state(m):
    return {"b": m.b.tolist(), "we": m.enc.weight.flatten().tolist(), "be": m.enc.bias.tolist(),
            "wd": m.dec.weight.flatten().tolist()}


def main():
    torch.manual_seed(0)
    m = SAE(D, L)
    x = torch.randn(N, D) * 2 + 0.5
    init = state(m)
    opt = torch.optim.Adam(m.parameters(), lr=LR)
    for _ in range(EPOCHS):
        opt.zero_grad()
        f, xh = m(x)
        loss = torch.nn.functional.mse_loss(xh, x) + LAM * f.abs().sum(dim=1).mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        f, _ = m(x)
    out = {"n": N, "d": D, "latents": L, "epochs": EPOCHS, "lr": LR, "l1": LAM, "x": x.flatten().tolist(),
           "init": init, "trained": state(m), "loss": loss.item(), "acts": f.flatten().tolist(),
           "codes": f.argmax(dim=1).tolist(), "torch": torch.__version__}
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "sae_paper.json"), "w") as fh:
        json.dump(out, fh)
    print("loss", loss.item(), "codes", out["codes"])


if __name__ == "__main__":
    main()

"""Reference Jensen-Shannon divergences for codebook's steering measure.

    /work/venv/bin/python sae/codebook/testdata/make_js_refs.py > sae/codebook/testdata/js_ref.json

The divergence as the reference computes it (taufeeque9/codebook-features,
codebook_features/utils.py JSD, transcribed: softmax of two logit rows, the
mean distribution m, and 0.5 (KL(p1 || m) + KL(p2 || m)) with torch's
kl_div), in float64, on seeded random logits of the TokFSM vocabulary (11)
and a few edge cases (equal rows, a near one-hot row).
"""
import json

import torch
import torch.nn.functional as F


def jsd(l1, l2):
    p1, p2 = F.softmax(l1, dim=-1), F.softmax(l2, dim=-1)
    m = (0.5 * (p1 + p2)).log()
    kl1 = F.kl_div(m, F.log_softmax(l1, dim=-1), log_target=True, reduction="sum")
    kl2 = F.kl_div(m, F.log_softmax(l2, dim=-1), log_target=True, reduction="sum")
    return float(0.5 * (kl1 + kl2))


g = torch.Generator().manual_seed(7)
cases = []
for i in range(6):
    a = torch.randn(11, generator=g, dtype=torch.float64) * (1 + i)
    b = torch.randn(11, generator=g, dtype=torch.float64) * (1 + i)
    cases.append((a, b))
a = torch.randn(11, generator=g, dtype=torch.float64)
cases.append((a, a.clone()))
hot = torch.full((11,), -30.0, dtype=torch.float64)
hot[3] = 30.0
cases.append((hot, torch.randn(11, generator=g, dtype=torch.float64)))
out = {"cases": [{"logits1": x.tolist(), "logits2": y.tolist(), "js": jsd(x, y)} for x, y in cases]}
print(json.dumps(out, indent=1))

"""BatchTopK and Matryoshka BatchTopK trained by SAELens itself on activations
exported from Loupe (sae/saelens_compare_test.go), in the same batch order, for
scripts/sae-batchtopk-saelens.sh.

The SAE classes are SAELens 6.54.12's own training SAEs (BatchTopKTrainingSAE,
MatryoshkaBatchTopKTrainingSAE: their encode, BatchTopK activation, AuxK loss,
nested-prefix losses and topk_threshold EMA). The loop around them is SAELens's
SAETrainer._train_step transcribed: dead mask = steps since a latent fired >
dead_feature_window, training_forward_pass, loss.backward, clip_grad_norm_(1.0)
(--clip), Adam, and the learning-rate schedule of the Loupe run (linear warm-up
over 5% of the steps, linear decay over the last 20%). SAELens's package
__init__ pulls in its whole training runner (wandb, datasets, ...), so the
saes modules are imported under a bare package object.

Prints one JSON line: the threshold, inference (JumpReLU at the threshold, as
SAELens exports BatchTopK), BatchTopK over the held-out rows, last training step.
"""
import argparse, json, logging, sys, types

ap = argparse.ArgumentParser()
ap.add_argument('--dir', required=True, help='folder with train.npy, init.npy, eval.npy')
ap.add_argument('--pylib', required=True, help='pip --target folder holding sae_lens 6.54.12 and its import deps')
ap.add_argument('--arch', default='batchtopk', choices=['batchtopk', 'matryoshka'])
ap.add_argument('--k', type=float, default=16)
ap.add_argument('--expansion', type=int, default=8)
ap.add_argument('--dec-init-norm', type=float, default=0.1, help='SAELens default 0.1; 1 = unit-norm rows as Loupe; 0 = None')
ap.add_argument('--aux', type=float, default=1.0, help='aux_loss_coefficient (SAELens default 1; Loupe 1/32)')
ap.add_argument('--dead-window', type=int, default=1000, help='dead_feature_window in steps (SAELens default 1000)')
ap.add_argument('--bdec', default='zero', choices=['zero', 'gm'], help='b_dec init: zero (SAELens v6) or the geometric median (Loupe)')
ap.add_argument('--clip', type=float, default=1.0, help="SAETrainer's clip_grad_norm_ (0: none)")
ap.add_argument('--lr', type=float, default=1e-3)
ap.add_argument('--seed', type=int, default=1)
a = ap.parse_args()

sys.path.insert(0, a.pylib)
for name in ('sae_lens', 'sae_lens.saes', 'sae_lens.training'):
    m = types.ModuleType(name)
    m.__path__ = [a.pylib + '/' + name.replace('.', '/')]
    m.__version__ = '6.54.12'
    m.logger = logging.getLogger('sae_lens')
    sys.modules[name] = m
from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig  # noqa: E402
from sae_lens.saes.matryoshka_batchtopk_sae import (  # noqa: E402
    MatryoshkaBatchTopKTrainingSAE, MatryoshkaBatchTopKTrainingSAEConfig)
from sae_lens.saes.sae import TrainStepInput  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.manual_seed(a.seed)
X, E, I = (np.load(f'{a.dir}/{n}.npy') for n in ('train', 'eval', 'init'))
d = X.shape[1]
dsae = a.expansion * d
# normalize_activations="expected_average_only_in": E|x| = sqrt(d_in) on the init sample, as Loupe's
scale = np.sqrt(d) / np.linalg.norm(I, axis=1).mean()
X, E, I = ((v * scale).astype(np.float32) for v in (X, E, I))
common = dict(d_in=d, d_sae=dsae, k=a.k, aux_loss_coefficient=a.aux,
              decoder_init_norm=(a.dec_init_norm or None), apply_b_dec_to_input=True)
if a.arch == 'batchtopk':
    cfg = BatchTopKTrainingSAEConfig(**common)
    sae = BatchTopKTrainingSAE(cfg)
else:
    widths = [dsae // 16, dsae // 8, dsae // 4, dsae // 2, dsae]  # Loupe's DefaultGroups
    cfg = MatryoshkaBatchTopKTrainingSAEConfig(**common, matryoshka_widths=widths)
    sae = MatryoshkaBatchTopKTrainingSAE(cfg)
if a.bdec == 'gm':  # Weiszfeld from the mean, 100 iterations, as sae.GeometricMedian
    m = I.mean(0).astype(np.float64)
    for _ in range(100):
        w = 1 / np.maximum(np.linalg.norm(I - m, axis=1), 1e-12)
        nm = (w[:, None] * I).sum(0) / w.sum()
        done = ((nm - m) ** 2).sum() <= 1e-14 * ((nm ** 2).sum() + 1)
        m = nm
        if done:
            break
    with torch.no_grad():
        sae.b_dec.copy_(torch.tensor(m, dtype=torch.float32))
B = 1024
steps = X.shape[0] // B
warm, decay = min(1000, steps // 20), steps // 5


def lr_at(s):
    f = 1.0
    if warm > 0 and s < warm:
        f *= (s + 1) / warm
    if decay > 0 and s >= steps - decay:
        f *= max(0, (steps - s) / decay)
    return a.lr * f


opt = torch.optim.Adam(sae.parameters(), lr=a.lr, betas=(0.9, 0.999))
since = torch.zeros(dsae)
last = {}
for s in range(steps):
    for g in opt.param_groups:
        g['lr'] = lr_at(s)
    x = torch.tensor(X[s * B:(s + 1) * B])
    dead = (since > a.dead_window).bool()
    out = sae.training_forward_pass(TrainStepInput(sae_in=x, coefficients={}, dead_neuron_mask=dead,
                                                   n_training_steps=s, is_logging_step=False))
    with torch.no_grad():
        fired = out.feature_acts.bool().float().sum(-2).bool()
        since += 1
        since[fired] = 0
        fvu = ((out.sae_out - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    out.loss.backward()
    if a.clip > 0:
        torch.nn.utils.clip_grad_norm_(sae.parameters(), a.clip)
    opt.step()
    opt.zero_grad()
    last = dict(fvu=float(fvu), dead=float(dead.float().mean()))
with torch.no_grad():
    e = torch.tensor(E)
    nrm = sae.W_dec.norm(dim=-1)
    hp = (e - sae.b_dec) @ sae.W_enc + sae.b_enc
    if cfg.rescale_acts_by_decoder_norm:
        hp = hp * nrm

    def metrics(f):
        rec = (f / nrm if cfg.rescale_acts_by_decoder_norm else f) @ sae.W_dec + sae.b_dec
        return dict(l0=float((f > 0).float().sum(-1).mean()),
                    fvu=float(((rec - e) ** 2).sum() / ((e - e.mean(0)) ** 2).sum()),
                    dead=float(((f > 0).sum(0) == 0).float().mean()))
    thr = float(sae.topk_threshold)
    res = dict(arch=a.arch, settings=dict(dec_init_norm=a.dec_init_norm, aux=a.aux, dead_window=a.dead_window,
                                          bdec=a.bdec, clip=a.clip),
               threshold=thr, inference=metrics(hp * (hp > thr)),
               batchtopk_on_eval=metrics(sae.activation_fn(hp)), train_fvu=last['fvu'], train_dead=last['dead'])
print(json.dumps(res))

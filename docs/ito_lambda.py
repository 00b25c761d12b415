"""What ITO's lambda does, under the paper's norms and under the old mean form: prints a table.

The scene is docs/make_ito_images.py's analytic demo (pixels_core.analytic.FiniteSetDenoiser, the exact per-pixel
posterior mean of a small image set, in pixel space, 3 x 64 x 64 = 12288 values, close to SD's 4 x 64 x 64 = 16384):
the edit condition repaints the house blue and also offers sunset versions of the whole scene, so without
preservation the background changes too. One mask (Eq. 7) and one guidance image (ITO at lambda = 1 from a
random-noise encoding) are made once and shared by every row; then the final edit runs at each lambda with the
paper's defaults (25 DDIM steps, t_u 15, k 1, Adam lr 0.1).

Columns, per form of the preservation loss L_REC:
- ``bg``: background change, mean |y - source| outside the mask (0 = the source kept);
- ``bg>0.1``: share of background values that moved by more than 0.1 (image range [-1, 1]);
- ``edit``: edit region's distance to the guidance image, mean |y - guidance| inside the mask.

Forms: ``sum`` is the paper's Eq. 3/4, ``||(1-m)(y-x)||^2`` summed over the latent (what pixels_core.ito does);
``mean`` is the pack's earlier ``mean(((1-m)(y-x))^2)``, the same loss divided by C*H*W, here swapped in for the
comparison only. Adam does not care about a loss's overall scale, so lambda = 1 (preservation alone) and lambda = 0
(guidance alone) give the same result in both forms; in between, the mean form weighs preservation C*H*W times less.

    python docs/ito_lambda.py
"""
import contextlib
import pathlib
import sys

import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs"))
from make_ito_images import scene  # noqa: E402
from pixels_core import ito, noise  # noqa: E402

LAMBDAS = (0.0, 0.3, 0.6, 0.9, 1.0)
SMALL = (1e-4, 1e-3, 1e-2)  # where the sum form's balance actually turns (see the note printed at the end)


def mean_rec_loss(y, x, mask=None):
    """The old form: the squared error's mean over the latent instead of its sum."""
    d = y - x if mask is None else (1.0 - mask) * (y - x)
    return (d * d).flatten(1).mean(1)


@contextlib.contextmanager
def rec_form(form):
    """``pixels_core.ito`` with its L_REC as is (``sum``) or replaced by :func:`mean_rec_loss` (``mean``)."""
    real = ito.rec_loss
    if form == "mean":
        ito.rec_loss = mean_rec_loss  # documentation-only swap, restored below
    try:
        yield
    finally:
        ito.rec_loss = real


def main():
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    model, src, sig, SRC, EDIT, LOCAL = scene()
    mask, _ = ito.estimate_mask(model, src, ito.sigma_at_strength(sig, 0.5), SRC, LOCAL, n=4)
    guide = ito.generate_guidance(model, src, sig, noise.randn(src.shape, 0, "ito guidance demo"), EDIT, mask=mask)
    inside = mask.expand_as(src).bool()
    outside = ~inside
    n = src[0].numel()

    def measure(y):
        bg = (y - src).abs()[outside]
        return bg.mean().item(), (bg > 0.1).float().mean().item(), (y - guide).abs()[inside].mean().item()

    rows = {}
    for form in ("sum", "mean"):
        with rec_form(form):
            for lam in LAMBDAS + SMALL:
                y = ito.edit(model, src, sig, SRC, EDIT, mask=mask, guidance=guide if lam < 1 else None, lam=lam)
                rows[form, lam] = measure(y)
    ref_bg = measure(guide)
    print(f"analytic scene {tuple(src.shape[1:])} (C*H*W = {n}), mask covers {inside[0].float().mean().item():.1%}; "
          f"25 DDIM steps, t_u 15, k 1, Adam lr 0.1")
    print(f"guidance image itself: bg {ref_bg[0]:.4f}, bg>0.1 {ref_bg[1]:.1%}")
    cols = f"{'bg':>8} {'bg>0.1':>7} {'edit':>7}"
    head = f"{'lambda':>6} | {'sum (paper):':<12}{cols} | {'mean (old):':<12}{cols}"
    print(head)
    print("-" * len(head))
    for lam in LAMBDAS + SMALL:
        if lam == SMALL[0]:
            print("small lambda, for where the balance turns:")
        s, m = rows["sum", lam], rows["mean", lam]
        print(f"{lam:6.4g} | {'':12}{s[0]:8.4f} {s[1]:7.1%} {s[2]:7.4f} | {'':12}{m[0]:8.4f} {m[1]:7.1%} {m[2]:7.4f}")
    eq = 0.6 / (0.6 + 0.4 * n)
    print(f"The mean form at lambda 0.6 weighs the terms as the sum form does at lambda = 0.6 / (0.6 + 0.4 * {n}) "
          f"= {eq:.2g}.")


if __name__ == "__main__":
    main()

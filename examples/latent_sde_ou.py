"""A latent SDE and an SDE-GAN learn a stochastic process from its sample paths.

The data are paths of ``dY = 2(sin 2πt - Y) dt + (0.2 + 0.4t) dW`` observed at 21 times. The
latent SDE (Li et al. 2020) is trained by its evidence lower bound (posterior drift, prior drift,
shared diffusion; the path KL integrated in the same solve); the SDE-GAN (Kidger et al. 2021) by
the Wasserstein loss with a neural CDE critic kept Lipschitz by a gradient penalty. Both then
generate fresh paths, whose mean and standard deviation are compared with the exact ones (the
process is linear: its moments solve two ODEs).

Run ``python examples/latent_sde_ou.py`` (one seed of the reproduce entry's settings: about 25
minutes of CPU time on one thread) or with ``--quick`` (seconds).
"""

from __future__ import annotations

import argparse

import torch

from torchnde.reproduce.entries import neural_sde_ou as ou


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (seconds)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    cfg = ou._settings(False)
    if args.quick:
        cfg.update(train=128, samples=500, latent_iters=41, gan_iters=10, batch=64, gan_batch=32)
    ts = torch.linspace(0, 1, 21)
    data = ou.simulate(cfg["train"], ts, seed=100 + args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    class Ticks:  # a progress bar that prints now and then, and keeps the latent SDE's ELBOs
        def __init__(self):
            self.count = 0
            self.elbos: list[float] = []

        def update(self, n=1):
            self.count += n

        def set_postfix(self, **values):
            if "elbo" in values:
                self.elbos.append(float(values["elbo"]))
            if self.count % 50 == 1:
                print(
                    f"iteration {self.count:5d}  "
                    + "  ".join(f"{k} {v}" for k, v in values.items())
                )

    class Context:
        progress = Ticks()

    latent = ou._train_latent(Context, ts, data, cfg, gen)
    gan = ou._train_gan(Context, ts, data, cfg, gen)
    mean, std = ou.truth(ts)
    elbos = Context.progress.elbos
    results = {"elbo_first": elbos[0], "elbo_last": elbos[-1]}
    with torch.no_grad():
        for name, paths in (
            ("latent SDE", ou.sample_latent(latent, ts, cfg["samples"], seed=1, generator=gen)),
            ("SDE-GAN", gan.sample(cfg["samples"], generator=gen)),
        ):
            errors = ou._marginal_errors(paths, mean, std)
            results[name] = max(max(errors["mean"]), max(errors["std"]))
            print(
                f"{name}: worst relative error of the mean / sd over t in [0, 1]: "
                f"{max(errors['mean']):.3f} / {max(errors['std']):.3f}"
            )
    return results


if __name__ == "__main__":
    main()

"""Train models.py's Generator on MNIST and save it as a plain state_dict with the official file's keys.

    python GAN_train.py --data_root ../shared/data --epochs 130 --seed 1 --eval_model weights/mnist_classifier.onnx --output weights/generator_mnist.pth

Recipe: PyTorch-GAN gan.py's (Adam lr 2e-4, betas 0.5/0.999, batch 64, non-saturating BCE loss), with a
Discriminator made harder to fool into mode collapse: spectral norm on every layer and a minibatch-stddev
feature, so a generator that drops digits or repeats itself is told so. The shipped weights are an
exponential moving average of the generator (its BatchNorm statistics recomputed for the averaged weights),
and with --eval_model the epoch whose samples score best is kept. The Generator itself is gan.py's, so the
weights load in the upstream scripts and export to the same ONNX graph.
"""

import sys  # the root on the path first: the guide's steps and the gan package live there
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gan.cli import exit_on_signal_until_ready

exit_on_signal_until_ready(__name__)  # before the slow imports below


import argparse
import contextlib
import copy
import math
import time
from pathlib import Path

from gan.cli import (
    HelpFormatter,
    InputError,
    check_output_file,
    ensure_dir,
    non_negative_int,
    positive_int,
    progress,
    refuse_overlap,
    require_modules,
    run_main,
    seed32,
)


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("--data_root", required=True, help="folder holding MNIST/raw/*-idx*-ubyte (torchvision's layout)")
    parser.add_argument("--download", action="store_true", help="download MNIST into --data_root first (needs internet)")
    parser.add_argument("--epochs", type=positive_int, default=130, help="passes over the training set")
    parser.add_argument("--batch_size", type=positive_int, default=64, help="images per step")
    parser.add_argument("--lr", type=float, default=0.0002, help="Adam learning rate of both networks")
    parser.add_argument("--seed", type=seed32, default=1, help="seed of torch and numpy")
    parser.add_argument("--output", required=True, help="generator weights to write (plain state_dict)")
    parser.add_argument("--resume", default=None, help="training checkpoint to continue from (<output stem>_train/checkpoint.pt)")
    parser.add_argument("--ema_decay", type=float, default=0.999, help="decay of the generator's moving average (0: none)")
    parser.add_argument(
        "--eval_model", default=None, help="digit classifier ONNX (weights/mnist_classifier.onnx): score each epoch, keep the best"
    )
    parser.add_argument("--eval_samples", type=positive_int, default=6400, help="samples scored per epoch with --eval_model")
    parser.add_argument(
        "--save_every_epoch",
        action="store_true",
        help="also keep each epoch's averaged generator as <output stem>_train/generator_epoch_NNN.pth",
    )
    parser.add_argument("--threads", type=non_negative_int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


require_modules(__name__, get_args_parser, "torch")  # before the imports that need them: --help works without

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from gan.files import IMG_SIZE, LATENT_DIM, atomic_path, latent_batch, save_grid
from models import Generator, extract_state_dict, load_checkpoint


class MinibatchStddev(nn.Module):
    """Appends the batch's mean feature standard deviation: a collapsed generator's batches have a low one."""

    def forward(self, x):
        spread = x.std(dim=0, unbiased=False).mean().expand(x.size(0), 1)
        return torch.cat([x, spread], dim=1)


class TrainingDiscriminator(nn.Module):
    """gan.py's Discriminator widths (784-512-256-1) with spectral norm and a minibatch-stddev feature; outputs logits."""

    def __init__(self):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        self.features = nn.Sequential(
            sn(nn.Linear(IMG_SIZE, 512)),
            nn.LeakyReLU(0.2),
            sn(nn.Linear(512, 256)),
            nn.LeakyReLU(0.2),
            MinibatchStddev(),
        )
        self.head = sn(nn.Linear(257, 1))

    def forward(self, img):
        return self.head(self.features(img.view(img.size(0), -1)))


def load_mnist_train(root, download):
    """MNIST training images as one float tensor (60000, 784) in [-1, 1] (gan.py's Normalize([0.5], [0.5]))."""
    from torchvision.datasets import MNIST

    made = [p for p in (Path(root), Path(root) / "MNIST", Path(root) / "MNIST" / "raw") if not p.exists()]
    try:
        dataset = MNIST(root=root, train=True, download=download)
    except RuntimeError as err:
        for folder in reversed(made):  # a failed download leaves none of the folders it made
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise InputError(
            f"MNIST not found under {root} (expected {Path(root) / 'MNIST/raw/train-images-idx3-ubyte'} "
            f"and its label file): copy the four idx files there or pass --download ({err})"
        ) from None
    return dataset.data.reshape(len(dataset.data), -1).float().div_(127.5).sub_(1.0)


@torch.no_grad()
def recalibrate_batchnorm(generator, batches=50, batch_size=256):
    """Recompute BatchNorm running statistics for the generator's current weights (needed after averaging them)."""
    bns = [m for m in generator.modules() if isinstance(m, nn.BatchNorm1d)]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches below
    generator.train()
    for _ in range(batches):
        generator(torch.randn(batch_size, LATENT_DIM))
    for bn, momentum in zip(bns, saved):
        bn.momentum = momentum
    generator.eval()


def save_checkpoint(path, **state):
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def main(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    output = check_output_file(args.output, "--output")
    train_dir = output.with_name(output.stem + "_train")
    if not (args.lr > 0 and 0 <= args.ema_decay < 1):
        raise InputError(f"--lr {args.lr} must be > 0 and --ema_decay {args.ema_decay} in [0, 1)")
    mnist_raw = Path(args.data_root) / "MNIST" / "raw"  # only these files are read
    refuse_overlap(
        [("--data_root", mnist_raw), ("--resume", args.resume), ("--eval_model", args.eval_model)],
        [("--output", output), ("its training folder", train_dir)],
    )
    ckpt = None
    if args.resume:
        # Tensors and plain values only (weights_only): a crafted checkpoint runs no code.
        ckpt = load_checkpoint(args.resume)
        if not isinstance(ckpt, dict) or not {"generator", "discriminator", "opt_g", "opt_d", "ema", "epoch"} <= set(ckpt):
            raise InputError(
                f"{args.resume}: not a training checkpoint of GAN_train.py (expected generator, discriminator, opt_g, opt_d, ema and epoch)"
            )
    scorer = None
    if args.eval_model:
        from GAN_eval import DigitScorer

        scorer = DigitScorer(args.eval_model)

    images = load_mnist_train(args.data_root, args.download)
    train_dir = ensure_dir(train_dir, "training folder")  # made once the data is found: a refusal leaves nothing
    generator, discriminator = Generator(), TrainingDiscriminator()
    opt_g = torch.optim.Adam(generator.parameters(), lr=args.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=args.lr, betas=(0.5, 0.999))
    ema = copy.deepcopy(generator).eval()
    start_epoch, best, history = 0, None, []
    if ckpt:
        generator.load_state_dict(ckpt["generator"])
        discriminator.load_state_dict(ckpt["discriminator"])
        opt_g.load_state_dict(ckpt["opt_g"])
        opt_d.load_state_dict(ckpt["opt_d"])
        ema.load_state_dict(ckpt["ema"])
        torch.set_rng_state(ckpt["torch_rng"])
        start_epoch, best, history = ckpt["epoch"] + 1, ckpt.get("best"), ckpt.get("history", [])
        print(f"resumed from {args.resume} after epoch {ckpt['epoch'] + 1}")

    fixed_z = torch.from_numpy(np.random.default_rng(args.seed).standard_normal((64, LATENT_DIM), dtype=np.float32))
    steps = math.ceil(len(images) / args.batch_size)
    started = time.time()
    for epoch in range(start_epoch, args.epochs):
        epoch_start = time.time()
        generator.train()
        order = torch.randperm(len(images))
        bar = progress(range(steps), args.quiet, desc=f"epoch {epoch + 1}/{args.epochs}", leave=False)
        for step in bar:
            real = images[order[step * args.batch_size : (step + 1) * args.batch_size]]
            n = len(real)
            if n < 2:  # BatchNorm and the stddev feature need two samples
                continue
            fake = generator(torch.randn(n, LATENT_DIM))

            opt_d.zero_grad(set_to_none=True)
            loss_d = (
                F.softplus(-discriminator(real)).mean()  # BCE(D(real), 1)
                + F.softplus(discriminator(fake.detach())).mean()
            )  # BCE(D(fake), 0)
            loss_d.backward()
            opt_d.step()

            opt_g.zero_grad(set_to_none=True)
            loss_g = F.softplus(-discriminator(fake)).mean()  # non-saturating: BCE(D(fake), 1)
            loss_g.backward()
            opt_g.step()

            with torch.no_grad():
                decay = min(args.ema_decay, (1 + epoch * steps + step) / (10 + epoch * steps + step))
                for p_ema, p in zip(ema.parameters(), generator.parameters()):
                    p_ema.lerp_(p, 1 - decay)
        recalibrate_batchnorm(ema)
        with torch.no_grad():
            save_grid(ema(fixed_z).numpy(), train_dir / f"epoch_{epoch + 1:03d}.png")
        record = {
            "epoch": epoch + 1,
            "loss_d": round(loss_d.item(), 4),
            "loss_g": round(loss_g.item(), 4),
            "seconds": round(time.time() - epoch_start, 1),
        }
        if scorer:
            with torch.inference_mode():
                samples = [ema(torch.from_numpy(latent_batch(args.seed, i, 64))).numpy() for i in range(-(-args.eval_samples // 64))]
            scores = scorer.score_batches(samples)
            record.update({k: scores[k] for k in ("confidence", "inception_score", "fid", "min_digit_share")})
            if best is None or record["fid"] < best["fid"]:
                best = dict(record)
                save_checkpoint(train_dir / "best_generator.pth", **ema.state_dict())
        if args.save_every_epoch:
            save_checkpoint(train_dir / f"generator_epoch_{epoch + 1:03d}.pth", **ema.state_dict())
        history.append(record)
        print(" ".join(f"{k}={v}" for k, v in record.items()), flush=True)
        save_checkpoint(
            train_dir / "checkpoint.pt",
            generator=generator.state_dict(),
            discriminator=discriminator.state_dict(),
            opt_g=opt_g.state_dict(),
            opt_d=opt_d.state_dict(),
            ema=ema.state_dict(),
            epoch=epoch,
            torch_rng=torch.get_rng_state(),
            best=best,
            history=history,
            args=vars(args),
        )

    if best is not None:
        final = extract_state_dict(load_checkpoint(train_dir / "best_generator.pth"), output)
        print(f"keeping epoch {best['epoch']} (best Frechet distance {best['fid']})")
    else:
        final = ema.state_dict() if args.ema_decay else generator.state_dict()
    save_checkpoint(output, **final)
    print(f"saved generator to {output} after {time.time() - started:.0f} s; samples and checkpoint in {train_dir}")


if __name__ == "__main__":
    run_main(main, get_args_parser())

"""The GAN of PyTorch-GAN implementations/gan/gan.py with its MNIST settings, and the one checkpoint loader.

Generator: 100 -> 128 -> 256 -> 512 -> 1024 -> 784, reshaped to (N, 1, 28, 28). Its BatchNorm1d layers keep
gan.py's quirk `BatchNorm1d(out, 0.8)`: the second positional argument is eps, so eps = 0.8. Every trained
weight file was trained with it, so changing it would change every output.
"""

import io
import textwrap
from pathlib import Path

import torch
import torch.nn as nn

from gan.cli import InputError, short_list
from gan.files import IMG_SHAPE, IMG_SIZE, LATENT_DIM, read_bytes

__all__ = ["LATENT_DIM", "IMG_SHAPE", "Generator", "Discriminator", "load_generator", "load_checkpoint", "extract_state_dict"]


class Generator(nn.Module):
    def __init__(self):
        super().__init__()

        def block(in_feat, out_feat, normalize=True):
            layers = [nn.Linear(in_feat, out_feat)]
            if normalize:
                layers.append(nn.BatchNorm1d(out_feat, 0.8))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            return layers

        self.model = nn.Sequential(
            *block(LATENT_DIM, 128, normalize=False),
            *block(128, 256),
            *block(256, 512),
            *block(512, 1024),
            nn.Linear(1024, IMG_SIZE),
            nn.Tanh(),
        )

    def forward(self, z):
        img = self.model(z)
        return img.view(img.size(0), *IMG_SHAPE)


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.model = nn.Sequential(
            nn.Linear(IMG_SIZE, 512),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(512, 256),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(256, 1),
            nn.Sigmoid(),
        )

    def forward(self, img):
        return self.model(img.view(img.size(0), -1))


# Keys under which training scripts commonly wrap the generator's weights.
WRAPPER_KEYS = ("state_dict", "generator", "model")


def extract_state_dict(checkpoint, path):
    """The generator's state_dict inside a loaded checkpoint, without DataParallel's `module.` prefixes."""
    if isinstance(checkpoint, dict):
        for key in WRAPPER_KEYS:
            inner = checkpoint.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                checkpoint = inner
                break
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise InputError(
            f"{path}: not a generator checkpoint (expected a state_dict of tensors, or one under {', '.join(map(repr, WRAPPER_KEYS))})"
        )
    return {key.removeprefix("module."): value for key, value in checkpoint.items()}


def load_checkpoint(path, device="cpu"):
    """torch.load(weights_only=True) of a file read as bytes: tensors and plain values only, so a crafted pickle
    runs no code, and a path that is not valid UTF-8 is no problem."""
    content = read_bytes(path, "checkpoint")
    try:
        return torch.load(io.BytesIO(content), map_location=device, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch.load fails in many ways on a file that is not a checkpoint
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
        first_sentence = textwrap.shorten(first_line.split(". ")[0], 100, placeholder="...")  # whole words only
        kind = " (it looks like an ONNX model: pass the .pth it was exported from)" if Path(path).suffix == ".onnx" else ""
        raise InputError(f"{path}: not a readable PyTorch checkpoint{kind} ({type(err).__name__}: {first_sentence})") from None


def load_generator(path, device="cpu"):
    """Load a gan.py Generator in eval mode from a plain, DistributedDataParallel or wrapped state_dict."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint file")
    state = extract_state_dict(load_checkpoint(path, device), path)

    generator = Generator()
    expected = generator.state_dict()
    # num_batches_tracked only matters for training with momentum=None; some exporters drop it.
    optional = {k for k in expected if k.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - set(state) - optional)
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {short_list(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {short_list(unexpected)}")
        raise InputError(f"{path}: not a checkpoint of the gan.py Generator: {'; '.join(parts)}")
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(expected[k].shape)})"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if wrong_shape:
        raise InputError(f"{path}: not a checkpoint of the gan.py Generator: wrong shapes {short_list(wrong_shape)}")
    not_finite = [
        f"{k} ({int((~torch.isfinite(v)).sum())} values)"
        for k, v in state.items()
        if v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]
    if not_finite:
        raise InputError(f"{path}: non-finite weights (NaN or Inf) in {short_list(not_finite)}: the generator would draw nothing")
    generator.load_state_dict(state, strict=False)
    return generator.to(device).eval()

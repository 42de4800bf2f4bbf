"""A number for the quality of generated digits: a small MNIST classifier scores any folder of generator outputs.

    python GAN_eval.py --images_path images                # online outputs images/<i>.bin
    python GAN_eval.py --images_path out                   # an offline run (newest run folder, TXT/BIN/NPY)
    python GAN_eval.py --real_mnist ../shared/data         # the reference row: real MNIST training images

For the samples it prints the mean top-class confidence of the classifier, the share of each digit,
an Inception-Score analogue exp(E_x[KL(p(y|x) || p(y))]) (10 for ten equally used, confidently
recognized digits; 6,400 real MNIST training images score 9.679), and the Frechet distance between the classifier's
penultimate features of the samples and those of the 10,000 real MNIST test images (statistics
bundled). Scoring runs the classifier on ONNX Runtime and needs no torch.

    python GAN_eval.py --train_classifier --data_root ../shared/data

trains the classifier (torch), reports its test accuracy and writes weights/mnist_classifier.onnx and
weights/mnist_test_stats.npz.
"""

from gan.cli import exit_on_signal_until_ready

exit_on_signal_until_ready(__name__)  # before the slow imports below


import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from gan.cli import HelpFormatter, InputError, check_output_file, import_required, positive_int, progress, refuse_overlap, run_main, seed32
from gan.files import numbered_files, read_bytes, read_online, read_output
from gan.onnx_models import onnx_session
from gan.records import save_step
from gan.runs import list_output_files, open_run

HERE = Path(__file__).resolve().parent
CLASSIFIER = HERE / "weights" / "mnist_classifier.onnx"
REFERENCE_STATS = HERE / "weights" / "mnist_test_stats.npz"
TARGETS = {"confidence": 0.90, "inception_score": 8.0, "min_digit_share": 0.05}


def get_args_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter, epilog=__doc__.split("\n\n", 1)[1]
    )
    parser.add_argument(
        "--images_path",
        action="append",
        default=[],
        help="online folder (<i>.bin) or offline output root / run folder; repeat to score several",
    )
    parser.add_argument("--real_mnist", default=None, help="score real MNIST training images from this data root (reference row)")
    parser.add_argument("--real_samples", type=positive_int, default=6400, help="real images scored with --real_mnist")
    parser.add_argument("--classifier", default=str(CLASSIFIER), help="classifier ONNX (outputs logits and features)")
    parser.add_argument("--reference_stats", default=str(REFERENCE_STATS), help="feature mean/covariance of real MNIST test images")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--save_json", default=None, help="also save the scores as JSON here (GAN_report.py reads it)")
    parser.add_argument("--train_classifier", action="store_true", help="train the classifier on --data_root and write it")
    parser.add_argument("--data_root", default=None, help="MNIST root (MNIST/raw/*-idx*-ubyte), for --train_classifier")
    parser.add_argument("--epochs", type=positive_int, default=4, help="classifier training epochs")
    parser.add_argument("--seed", type=seed32, default=0, help="classifier training seed")
    return parser


def frechet_distance(mu1, cov1, mu2, cov2):
    """||mu1 - mu2||^2 + Tr(C1 + C2 - 2 (C1 C2)^1/2), with the trace of the square root from eigenvalues.

    Tr((C1 C2)^1/2) = sum sqrt(eig(C1^1/2 C2 C1^1/2)), a symmetric PSD matrix: no complex sqrtm needed.
    """
    vals, vecs = np.linalg.eigh(cov1)
    sqrt_c1 = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    middle = np.linalg.eigvalsh(sqrt_c1 @ cov2 @ sqrt_c1)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * np.sqrt(np.clip(middle, 0, None)).sum())


class DigitScorer:
    """The classifier on ONNX Runtime, with streaming accumulators so that any number of images fits in memory."""

    def __init__(self, classifier=CLASSIFIER, reference_stats=REFERENCE_STATS):
        for path in (classifier, reference_stats):
            if not Path(path).is_file():
                raise InputError(f"{path}: missing (train it with GAN_eval.py --train_classifier --data_root DIR)")
        self.session = onnx_session(classifier, what="classifier ONNX model")
        names = ([i.name for i in self.session.get_inputs()], [o.name for o in self.session.get_outputs()])
        if names != (["image"], ["logits", "features"]):
            raise InputError(
                f"{classifier}: not the digit classifier of GAN_eval.py (expected input 'image', outputs "
                f"'logits' and 'features'; found {names[0]} and {names[1]})"
            )
        self.feature_size = self.session.get_outputs()[1].shape[-1]
        self.ref_mu, self.ref_cov = self._reference(reference_stats)

    def _reference(self, path):
        """The real images' feature mean and covariance; a file that is not such an .npz is refused (no pickles)."""
        try:
            with np.load(path, allow_pickle=False) as stats:
                mu, cov = stats["mu"].astype(np.float64), stats["cov"].astype(np.float64)
        except Exception as err:  # noqa: BLE001 - np.load fails in many ways (zip, pickle refused, missing key)
            raise InputError(
                f"{path}: not the reference statistics of GAN_eval.py (an .npz with arrays mu and cov): "
                f"{type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}"
            ) from None
        size = self.feature_size if isinstance(self.feature_size, int) else len(mu)
        if mu.shape != (size,) or cov.shape != (size, size) or not (np.isfinite(mu).all() and np.isfinite(cov).all()):
            raise InputError(f"{path}: expected finite mu ({size},) and cov ({size}, {size}), found {mu.shape} and {cov.shape}")
        return mu, cov

    def features(self, images):
        """(probabilities (N, 10), penultimate features (N, F)) of images in [-1, 1], (N, 1, 28, 28)."""
        logits, feats = self.session.run(["logits", "features"], {"image": np.ascontiguousarray(images, np.float32).reshape(-1, 1, 28, 28)})
        logits = logits.astype(np.float64)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        return probs / probs.sum(axis=1, keepdims=True), feats.astype(np.float64)

    def score_batches(self, batches):
        """Scores of all images of an iterable of (N, 1, 28, 28) arrays."""
        count, prob_sum, plogp_sum, top_sum = 0, np.zeros(10), 0.0, 0.0
        votes = np.zeros(10, np.int64)
        feat_sum, feat_outer = 0.0, 0.0
        for images in batches:
            for start in range(0, len(images), 512):
                probs, feats = self.features(images[start : start + 512])
                if not (np.isfinite(probs).all() and np.isfinite(feats).all()):
                    raise InputError("the classifier's outputs are not finite (NaN or Inf): its weights are broken")
                count += len(probs)
                prob_sum += probs.sum(axis=0)
                plogp_sum += float((probs * np.log(np.clip(probs, 1e-12, None))).sum())
                top_sum += float(probs.max(axis=1).sum())
                votes += np.bincount(probs.argmax(axis=1), minlength=10)
                feat_sum = feat_sum + feats.sum(axis=0)
                feat_outer = feat_outer + feats.T @ feats
        if count < 2:
            raise InputError(f"need at least 2 images to score, got {count}")
        marginal = prob_sum / count
        mean_kl = plogp_sum / count - float((marginal * np.log(np.clip(marginal, 1e-12, None))).sum())
        mu = feat_sum / count
        cov = (feat_outer - count * np.outer(mu, mu)) / (count - 1)
        shares = votes / count
        return {
            "images": count,
            "confidence": round(top_sum / count, 4),
            "inception_score": round(float(np.exp(mean_kl)), 3),
            "fid": round(frechet_distance(mu, cov, self.ref_mu, self.ref_cov), 3),
            "min_digit_share": round(float(shares.min()), 4),
            "digit_shares": [round(float(s), 4) for s in shares],
        }


def generated_batches(path):
    """(description, how it was read, batches) of the generator outputs in `path`: online <i>.bin files, or an offline run."""
    path = Path(path)
    online = numbered_files(path, ".bin") if path.is_dir() else {}
    if online and not list_output_files(path):
        return f"{path} (online)", f"{path} (online outputs of GAN_testdata.py)", (read_online(online[i]) for i in sorted(online))
    run = open_run(path)
    return f"{run.path} (offline)", run.note, (read_output(run.outputs[i]) for i in sorted(run.outputs))


def read_idx_images(path):
    """An MNIST idx3 image file as uint8 (N, 28, 28)."""
    data = read_bytes(path, "MNIST idx3 image file")
    if len(data) < 16 or int.from_bytes(data[:4], "big") != 2051:
        raise InputError(f"{path}: not an MNIST idx3 image file (magic 2051)")
    count, rows, cols = (int.from_bytes(data[i : i + 4], "big") for i in (4, 8, 12))
    if (rows, cols) != (28, 28):
        raise InputError(f"{path}: images of {rows}x{cols} pixels; the classifier reads MNIST's 28x28")
    if len(data) != 16 + count * rows * cols:
        raise InputError(f"{path}: {len(data)} bytes, expected {16 + count * rows * cols} for {count} images of {rows}x{cols}")
    return np.frombuffer(data, np.uint8, offset=16).reshape(count, rows, cols)


def read_idx_labels(path):
    data = read_bytes(path, "MNIST idx1 label file")
    if len(data) < 8 or int.from_bytes(data[:4], "big") != 2049:
        raise InputError(f"{path}: not an MNIST idx1 label file (magic 2049)")
    return np.frombuffer(data, np.uint8, offset=8)


def mnist_split(root, train):
    raw = Path(root) / "MNIST" / "raw"
    prefix = "train" if train else "t10k"
    images, labels = raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"
    for path in (images, labels):
        if not path.is_file():
            raise InputError(f"{path}: missing (MNIST's idx files, laid out as torchvision.datasets.MNIST(root) expects)")
    return read_idx_images(images).astype(np.float32)[:, None] / 127.5 - 1.0, read_idx_labels(labels)


def train_classifier(args):
    """Train the digit classifier with torch, export it to ONNX, and bundle the real test-set feature statistics."""
    import_required("torch", "onnx")
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    from gan.files import atomic_path

    if not args.data_root:
        raise InputError("--train_classifier needs --data_root (the folder holding MNIST/raw)")
    classifier = check_output_file(args.classifier, "--classifier")
    check_output_file(args.reference_stats, "--reference_stats")
    refuse_overlap([("--data_root", args.data_root)], [("--classifier", classifier), ("--reference_stats", args.reference_stats)])
    torch.manual_seed(args.seed)
    train_x, train_y = (torch.from_numpy(a.copy()) for a in mnist_split(args.data_root, train=True))
    test_x, test_y = (torch.from_numpy(a.copy()) for a in mnist_split(args.data_root, train=False))

    class DigitClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Sequential(
                nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()
            )
            self.fc = nn.Sequential(nn.Dropout(0.25), nn.Linear(64 * 5 * 5, 128), nn.ReLU())
            self.head = nn.Sequential(nn.Dropout(0.5), nn.Linear(128, 10))

        def forward(self, image):
            features = self.fc(self.conv(image))
            return self.head(features), features

    model = DigitClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=args.epochs * ((len(train_x) + 127) // 128))
    started = time.time()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(train_x))
        for start in range(0, len(train_x), 128):
            idx = order[start : start + 128]
            # random shifts of up to 2 pixels, so generated digits off-centre are still read
            images = torch.roll(train_x[idx], shifts=tuple(torch.randint(-2, 3, (2,)).tolist()), dims=(2, 3))
            loss = F.cross_entropy(model(images)[0], train_y[idx].long())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        model.eval()
        with torch.inference_mode():
            correct = sum(
                int((model(test_x[s : s + 1000])[0].argmax(1) == test_y[s : s + 1000]).sum()) for s in range(0, len(test_x), 1000)
            )
        print(f"epoch {epoch + 1}/{args.epochs}: test accuracy {correct / len(test_x):.4f} ({time.time() - started:.0f} s)", flush=True)

    with torch.no_grad(), atomic_path(classifier) as tmp:
        torch.onnx.export(
            model,
            torch.zeros(1, 1, 28, 28),
            str(tmp),
            input_names=["image"],
            output_names=["logits", "features"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}, "features": {0: "batch"}},
            opset_version=13,
            dynamo=False,
        )
    with torch.inference_mode():
        feats = torch.cat([model(test_x[s : s + 1000])[1] for s in range(0, len(test_x), 1000)]).double().numpy()
    with atomic_path(args.reference_stats) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, mu=feats.mean(axis=0), cov=np.cov(feats, rowvar=False), test_accuracy=correct / len(test_x))
    print(
        f"wrote {classifier} ({classifier.stat().st_size / 1e6:.2f} MB, test accuracy {correct / len(test_x):.4f}) "
        f"and {args.reference_stats}"
    )


def main(args):
    if args.train_classifier:
        return train_classifier(args)
    if not args.images_path and not args.real_mnist:
        raise InputError("nothing to score: pass --images_path DIR (or --real_mnist DATA_ROOT)")
    if args.save_json:
        check_output_file(args.save_json, "--save_json")
        refuse_overlap([("--images_path", p) for p in args.images_path], [("--save_json", args.save_json)])
    scorer = DigitScorer(args.classifier, args.reference_stats)
    rows = []
    if args.real_mnist:
        images, _ = mnist_split(args.real_mnist, train=True)
        if args.real_samples > len(images):
            raise InputError(f"--real_samples {args.real_samples}: {args.real_mnist} holds {len(images)} training images")
        pick = np.random.default_rng(0).choice(len(images), args.real_samples, replace=False)
        rows.append(dict(scorer.score_batches([images[np.sort(pick)]]), source=f"real MNIST train ({args.real_samples})"))
    for path in args.images_path:
        source, note, batches = generated_batches(path)
        batches = progress(batches, args.quiet, desc=f"scoring {Path(path).name}", unit="batch")
        rows.append(dict(scorer.score_batches(batches), source=source, read=note))
    for row in rows:
        row["targets_met"] = all(row[k] >= v for k, v in TARGETS.items())
    if args.save_json:
        save_step(args.save_json, "eval", {"targets": TARGETS, "rows": rows})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'images':>6} {'confidence':>10} {'IS':>7} {'Frechet':>8} {'min share':>9}  {'digit shares 0..9':<59}  source")
    for row in rows:
        print(
            f"{row['images']:>6} {row['confidence']:>10.4f} {row['inception_score']:>7.3f} {row['fid']:>8.3f} "
            f"{row['min_digit_share']:>9.4f}  {' '.join(f'{s:.3f}' for s in row['digit_shares']):<59}  {row['source']}"
        )
    for row in rows:
        if "read" in row:
            print(f"read {row['read']}")
    print(
        f"targets: confidence >= {TARGETS['confidence']}, IS >= {TARGETS['inception_score']}, every digit >= "
        f"{TARGETS['min_digit_share']:.0%}: " + ", ".join(f"{r['source']}: {'met' if r['targets_met'] else 'NOT met'}" for r in rows)
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, get_args_parser()))

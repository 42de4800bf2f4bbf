"""GAN_eval.py: the metrics' arithmetic, and the same scores for online and offline outputs."""

import json

import numpy as np
import pytest

from conftest import ROOT, no_torch_env, run_script
from GAN_eval import DigitScorer, frechet_distance


def fake_scorer(probs, feats, ref_mu, ref_cov):
    scorer = DigitScorer.__new__(DigitScorer)
    scorer.ref_mu, scorer.ref_cov = ref_mu, ref_cov
    scorer.features = lambda images: (probs[images[:, 0, 0, 0].astype(int)], feats[images[:, 0, 0, 0].astype(int)])
    return scorer


def index_images(n):
    images = np.zeros((n, 1, 28, 28), np.float32)
    images[:, 0, 0, 0] = np.arange(n)
    return images


def test_frechet_distance():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5000, 8))
    cov = np.cov(a, rowvar=False)
    assert abs(frechet_distance(a.mean(0), cov, a.mean(0), cov)) < 1e-9
    shift = np.full(8, 0.5)
    assert frechet_distance(a.mean(0), cov, a.mean(0) + shift, cov) == pytest.approx(8 * 0.25, abs=1e-9)
    # diagonal covariances: sum (sqrt(s1) - sqrt(s2))^2
    assert frechet_distance(np.zeros(2), np.diag([4.0, 1.0]), np.zeros(2), np.diag([1.0, 9.0])) == pytest.approx(1 + 4)


def test_inception_score_confidence_and_shares():
    n = 1000
    onehot = np.eye(10)[np.arange(n) % 10]
    feats = np.random.default_rng(1).standard_normal((n, 4))
    scores = fake_scorer(onehot, feats, feats.mean(0), np.cov(feats, rowvar=False)).score_batches([index_images(n)])
    assert scores["inception_score"] == pytest.approx(10.0) and scores["confidence"] == 1.0
    assert scores["digit_shares"] == [0.1] * 10 and scores["min_digit_share"] == 0.1
    assert abs(scores["fid"]) < 1e-6
    collapsed = fake_scorer(np.eye(10)[np.zeros(n, int)], feats, feats.mean(0), np.cov(feats, rowvar=False))
    one_digit = collapsed.score_batches([index_images(n)[:500], index_images(n)[500:]])
    assert one_digit["inception_score"] == pytest.approx(1.0) and one_digit["digit_shares"][0] == 1.0
    unsure = fake_scorer(np.full((n, 10), 0.1), feats, feats.mean(0), np.cov(feats, rowvar=False)).score_batches([index_images(n)])
    assert unsure["confidence"] == pytest.approx(0.1) and unsure["inception_score"] == pytest.approx(1.0)


def test_online_and_offline_outputs_score_the_same(onnx_model, testdata, tmp_path):
    images, vectors = testdata
    run_script("run_msame.sh", "--model", str(onnx_model), "--input", str(vectors), "--output", str(tmp_path / "out"), "--outfmt", "TXT")
    result = run_script(
        "GAN_eval.py", "--images_path", str(images), "--images_path", str(tmp_path / "out"), "--json", env=no_torch_env(tmp_path)
    )
    online, offline = json.loads(result.stdout)
    assert online["images"] == offline["images"] == 12
    assert "(online)" in online["source"] and "(offline)" in offline["source"]
    assert offline["digit_shares"] == online["digit_shares"]
    assert offline["inception_score"] == pytest.approx(online["inception_score"], abs=2e-3)
    assert offline["fid"] == pytest.approx(online["fid"], rel=1e-3)


def test_bundled_classifier_is_small_and_present():
    assert (ROOT / "weights" / "mnist_classifier.onnx").stat().st_size <= 2_000_000
    stats = np.load(ROOT / "weights" / "mnist_test_stats.npz")
    assert stats["mu"].shape == (128,) and stats["cov"].shape == (128, 128) and float(stats["test_accuracy"]) > 0.99

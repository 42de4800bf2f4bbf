import torch

from conftest import assert_clean_error, random_generator, run_script
from models import Discriminator, Generator, load_generator

# The keys of the official generator_8p_0.0008_128.pth (without its `module.` prefix).
OFFICIAL_KEYS = {f"model.{i}.{p}" for i in (0, 2, 5, 8, 11) for p in ("weight", "bias")} | {
    f"model.{i}.{p}" for i in (3, 6, 9) for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
}


def test_generator_matches_gan_py():
    generator = Generator()
    assert set(generator.state_dict()) == OFFICIAL_KEYS
    norms = [m for m in generator.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert [m.num_features for m in norms] == [256, 512, 1024]
    assert all(m.eps == 0.8 for m in norms), "gan.py's BatchNorm1d(out, 0.8) sets eps = 0.8"
    assert sum(p.numel() for p in generator.parameters()) == 1_510_032  # about 1.5 M, about 6 MB in fp32 (facts file)
    assert generator.eval()(torch.zeros(2, 100)).shape == (2, 1, 28, 28)
    assert Discriminator()(torch.zeros(2, 1, 28, 28)).shape == (2, 1)


def test_load_generator_accepts_plain_ddp_and_wrapped(tmp_path):
    reference = random_generator(3)
    state = reference.state_dict()
    z = torch.randn(5, 100)
    expected = reference(z)
    variants = {
        "plain": state,
        "ddp": {f"module.{k}": v for k, v in state.items()},
        "state_dict": {"state_dict": state, "epoch": torch.tensor(3)},
        "generator": {"generator": {f"module.{k}": v for k, v in state.items()}},
        "model": {"model": state},
        "no_num_batches_tracked": {k: v for k, v in state.items() if "num_batches" not in k},
    }
    for name, content in variants.items():
        path = tmp_path / f"{name}.pth"
        torch.save(content, path)
        loaded = load_generator(path)
        assert not loaded.training
        assert torch.equal(loaded(z), expected), name


def test_checkpoint_of_another_model_names_the_keys(tmp_path):
    path = tmp_path / "discriminator.pth"
    torch.save(Discriminator().state_dict(), path)
    line = assert_clean_error(
        run_script("GAN_pth2onnx.py", f"--input_file={path}", "--output_file", str(tmp_path / "x.onnx"), check=False),
        path,
        "missing keys",
        "unexpected keys",
    )
    assert "model.11.weight" in line and "model.4.weight" in line
    assert not (tmp_path / "x.onnx").exists()


def test_wrong_shapes_are_named(tmp_path):
    state = random_generator().state_dict()
    state["model.11.weight"] = torch.zeros(10, 1024)
    path = tmp_path / "wrong.pth"
    torch.save(state, path)
    assert_clean_error(
        run_script("GAN_testdata.py", f"--pth_path={path}", f"--online_path={tmp_path}/i", f"--offline_path={tmp_path}/v", check=False),
        path,
        "model.11.weight",
        "(784, 1024)",
    )


def test_missing_and_unreadable_checkpoints(tmp_path):
    missing = tmp_path / "nope.pth"
    assert_clean_error(run_script("GAN_pth2onnx.py", f"--input_file={missing}", check=False), missing, "no such checkpoint")
    garbage = tmp_path / "garbage.pth"
    garbage.write_text("this is not a checkpoint\n")
    assert_clean_error(run_script("GAN_pth2onnx.py", f"--input_file={garbage}", check=False), garbage, "not a readable PyTorch checkpoint")
    tensors_not_dict = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensors_not_dict)
    assert_clean_error(
        run_script("GAN_pth2onnx.py", f"--input_file={tensors_not_dict}", check=False), tensors_not_dict, "not a generator checkpoint"
    )


def test_bundled_generator_is_the_default_and_loads():
    from conftest import ROOT

    path = ROOT / "weights" / "generator_mnist.pth"
    assert path.stat().st_size <= 7_000_000
    assert set(torch.load(path, weights_only=True)) == OFFICIAL_KEYS
    images = load_generator(path)(torch.randn(8, 100))
    assert images.shape == (8, 1, 28, 28) and images.min() >= -1 and images.max() <= 1
    assert '"weights" / "generator_mnist.pth"' in (ROOT / "run_pipeline.py").read_text()

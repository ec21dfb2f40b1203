"""DCGAN shapes, checkpoints that carry their config, and loading every file layout users bring."""
import pickle

import numpy as np
import pytest
import torch

from edge_ad.models import CheckpointError, Discriminator, GanConfig, Generator, load_generator, save_checkpoint
from edge_ad.models.checkpoint import config_from_state_dict
from edge_ad.runtime.preprocess import PreprocessSpec


def test_generator_and_discriminator_shapes():
    cfg = GanConfig(features_g=8, features_d=8)
    G, D = Generator(cfg).eval(), Discriminator(cfg)
    out = G(torch.randn(5, 100, 1, 1))
    assert out.shape == (5, 4, 64, 64)
    assert out.min() >= -1 and out.max() <= 1
    assert D(out).shape == (5, 1, 1, 1)
    assert 0 <= float(D(out).min()) and float(D(out).max()) <= 1
    critic = Discriminator(cfg, sigmoid=False)
    assert not isinstance(critic.disc[-1], torch.nn.Sigmoid)


def test_study_key_layout_and_shapes():
    sd = Generator(GanConfig(features_g=64)).state_dict()
    assert tuple(sd["gen.0.0.weight"].shape) == (100, 1024, 4, 4)
    assert tuple(sd["gen.3.0.weight"].shape) == (256, 128, 4, 4)
    assert tuple(sd["gen.4.weight"].shape) == (128, 4, 4, 4) and tuple(sd["gen.4.bias"].shape) == (4,)
    for i in range(4):
        assert f"gen.{i}.1.running_var" in sd and f"gen.{i}.1.num_batches_tracked" in sd
        assert f"gen.{i}.0.bias" not in sd  # bias-free ConvT blocks


def test_checkpoint_round_trip_carries_config(tmp_path, tiny_generator):
    spec = PreprocessSpec(far_mm=900.0)
    path = tmp_path / "g.pt"
    save_checkpoint(path, tiny_generator, preprocess=spec, train={"objective": "bce", "epochs": 3})
    raw = torch.load(path, weights_only=True)  # must be loadable without unpickling code
    assert raw["config"]["features_g"] == 8 and raw["train"]["epochs"] == 3
    G = load_generator(path)
    assert not G.training and G.cfg == tiny_generator.cfg and G.preprocess == spec
    z = torch.randn(2, 100, 1, 1)
    assert torch.equal(G(z), tiny_generator(z))


def test_study_state_dict_with_inferred_width(tmp_path):
    G0 = Generator(GanConfig(features_g=4)).eval()
    torch.save(G0.state_dict(), tmp_path / "study.pth")
    G = load_generator(tmp_path / "study.pth")
    assert G.cfg.features_g == 4 and G.source_format == "study-state-dict"
    z = torch.randn(1, 100, 1, 1)
    assert torch.equal(G(z), G0(z))
    assert config_from_state_dict(G0.state_dict()).z_dim == 100


def test_torchscript_file(tmp_path, tiny_generator):
    traced = torch.jit.trace(tiny_generator, torch.randn(1, 100, 1, 1))
    traced.save(str(tmp_path / "g_ts.pt"))
    G = load_generator(tmp_path / "g_ts.pt")
    assert G.source_format == "torchscript" and G.cfg.features_g == 8
    z = torch.randn(3, 100, 1, 1)
    torch.testing.assert_close(G(z), tiny_generator(z))


def test_a_torchscript_files_code_is_never_run(tmp_path, tiny_generator, capfd):
    """Audit 28 #6: load_generator opened TorchScript files with torch.jit.load, which compiles the archive's
    code and runs its __setstate__ (a TorchScript file is a program), while the docs say model files are read
    weights-only. Now the weights are read from data.pkl as data: the scripted study generator loads as before,
    a module whose __setstate__ prints prints nothing, and a data.pkl naming any other global (os.system) is
    refused naming it."""
    import os
    import zipfile

    class Setstate(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.zeros(2)

        @torch.jit.export
        def __getstate__(self):
            return (self.w, self.training)

        @torch.jit.export
        def __setstate__(self, state: tuple[torch.Tensor, bool]):
            print("CODE FROM THE MODEL FILE RAN")
            self.w = state[0]
            self.training = state[1]

        def forward(self, x):
            return x
    torch.jit.save(torch.jit.script(Setstate()), str(tmp_path / "setstate.pt"))
    torch.jit.save(torch.jit.script(tiny_generator), str(tmp_path / "scripted.pt"))

    class System:
        def __reduce__(self):
            return (os.system, ("echo SHELL FROM THE MODEL FILE RAN",))
    with zipfile.ZipFile(tmp_path / "system.pt", "w") as zf:
        zf.writestr("system/data.pkl", pickle.dumps(System(), protocol=2))
        zf.writestr("system/code/__torch__.py", "")
    capfd.readouterr()
    with pytest.raises(CheckpointError, match=r"not a study DCGAN generator state_dict: key 'gen\.0\.0\.weight' missing"):
        load_generator(tmp_path / "setstate.pt")
    out, err = capfd.readouterr()
    assert "RAN" not in out + err, out + err
    with pytest.raises(CheckpointError, match=r"system\.pt: cannot read the TorchScript file's weights as data "
                                              r"\(UnpicklingError: refused global (posix|os|nt)\.system\); edge-ad never runs a model "
                                              r"file's code"):
        load_generator(tmp_path / "system.pt")
    G = load_generator(tmp_path / "scripted.pt")
    out, err = capfd.readouterr()
    assert "RAN" not in out + err, out + err
    assert G.source_format == "torchscript"
    z = torch.randn(2, 100, 1, 1)
    torch.testing.assert_close(G(z), tiny_generator.eval()(z))


def test_a_study_state_dict_that_does_not_fit_names_the_keys_and_shapes(tmp_path, tiny_generator):
    """Audit 28 #28: a study state_dict with a missing key, a wrong shape or an extra key said only "RuntimeError:
    Error(s) in loading state_dict for Generator:" (torch puts the facts on the lines after). Now each is named."""
    sd = {k: v.clone() for k, v in tiny_generator.state_dict().items()}
    missing = dict(sd)
    del missing["gen.4.bias"]
    shape = dict(sd, **{"gen.4.weight": sd["gen.4.weight"][:, :, :3, :3].clone()})
    extra = dict(sd, **{"extra.weight": torch.zeros(2)})
    for name, d in (("missing", missing), ("shape", shape), ("extra", extra)):
        torch.save(d, tmp_path / f"{name}.pt")
    said = {}
    for name in ("missing", "shape", "extra"):
        with pytest.raises(CheckpointError) as e:
            load_generator(tmp_path / f"{name}.pt")
        said[name] = str(e.value)
    head = "weights do not match the generator (z_dim 100, width 8, 4 channels, 64 px): "
    assert said["missing"] == head + "missing gen.4.bias", said
    w = tuple(sd["gen.4.weight"].shape)
    assert said["shape"] == head + f"gen.4.weight has shape {w[:2] + (3, 3)}, the generator needs {w}", said
    assert said["extra"] == head + "unexpected extra.weight", said


def test_a_file_that_is_not_a_torch_save_file_is_named_as_such(tmp_path, tiny_generator):
    """Audit 28 #8 (d): a text file said torch's "KeyError: 101", random bytes "it holds Python objects other
    than tensors ... (a pickled program)" (not a pickle at all), a checkpoint cut short miniz's 300-character
    "failed finding central directory ... internal miniz error". Now each says what the file is."""
    save_checkpoint(tmp_path / "g.pt", tiny_generator, preprocess=PreprocessSpec())
    data = (tmp_path / "g.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[:len(data) // 2])
    (tmp_path / "text.pt").write_text("hello")
    (tmp_path / "random.pt").write_bytes(b"N\x14" + bytes(range(256)) * 4)
    for name, said in (("cut", f"its zip archive has no readable directory: the file ({len(data) // 2:,} bytes) was "
                               "cut short or corrupted (while it was written or copied?)"),
                       ("text", "it is neither a zip archive nor a pickle (it starts with b'hell'): not a file "
                                "torch.save wrote"),
                       ("random", "it is neither a zip archive nor a pickle (it starts with b'N\\x14\\x00\\x01'): "
                                  "not a file torch.save wrote")):
        with pytest.raises(CheckpointError) as e:
            load_generator(tmp_path / f"{name}.pt")
        assert str(e.value) == f"cannot load {tmp_path / name}.pt as a weights-only PyTorch file: {said}"


@pytest.mark.parametrize("content,needle", [
    (b"not a model at all", "weights-only"),
    (b"", "weights-only"),
])
def test_corrupt_files_are_named(tmp_path, content, needle):
    p = tmp_path / "bad.pt"
    p.write_bytes(content)
    with pytest.raises(CheckpointError, match=needle):
        load_generator(p)


def test_truncated_checkpoint(tmp_path, tiny_generator):
    p = tmp_path / "g.pt"
    save_checkpoint(p, tiny_generator, preprocess=PreprocessSpec())
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=str(p.name)):
        load_generator(p)


def test_mismatched_and_nonfinite_weights(tmp_path, tiny_generator):
    sd = dict(tiny_generator.state_dict())
    sd["gen.2.0.weight"] = torch.zeros(3, 3, 4, 4)
    torch.save(sd, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="do not match"):
        load_generator(tmp_path / "mismatch.pt")
    sd = dict(tiny_generator.state_dict())
    sd["gen.4.bias"] = torch.tensor([0.0, float("nan"), 0.0, 0.0])
    torch.save(sd, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="NaN"):
        load_generator(tmp_path / "nan.pt")
    torch.save({"foo": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="gen.0.0.weight"):
        load_generator(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_generator(tmp_path / "missing.pt")

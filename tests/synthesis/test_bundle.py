"""Tests for medgan.synthesis.bundle and `medgan export`: TorchScript, ONNX and MONAI Bundle exports of the
generator load in plain PyTorch, ONNX Runtime and monai.bundle, and match the Sampler for the same seeds."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medgan.synthesis.bundle import export_generator
from medgan.synthesis.sampler import Sampler
from medgan.synthesis.seeds import derive_seeds, latents_for_seeds

TOL = 1e-4  # float32: the Sampler runs the folded (batch-norm fused) generator


def _reference(ckpt, n=6):
    """Labels, latents and the Sampler's images (medgan's array layout) for the same per-sample seeds."""
    s = Sampler.from_checkpoint(ckpt)
    y = np.arange(n) % s.num_classes
    seeds = derive_seeds(3, y, np.arange(n), np.zeros(n, dtype=np.int64))
    return torch.from_numpy(y), latents_for_seeds(seeds, s.latent_dim), s.generate(y, seeds)


def test_torchscript_matches_the_sampler_in_monai_layout(tmp_path, breast):
    res = export_generator(breast, tmp_path / "g.pt", "torchscript")
    assert "TorchScript" in res.summary() and "normal, benign" in res.summary()
    y, z, ref = _reference(breast)
    g = torch.jit.load(str(tmp_path / "g.pt"))
    out = g(z, y)
    assert out.shape == (6, 1, 28, 28)
    assert (out - ref.transpose(-1, -2)).abs().max() < TOL  # LoadImage's (x, y) layout for BreastMNIST
    arr = export_generator(breast, tmp_path / "a.pt", "torchscript", layout="array")
    assert (torch.jit.load(str(arr.path))(z, y) - ref).abs().max() < TOL


def test_onnx_matches_the_sampler(tmp_path, breast):
    ort = pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed (pip install 'medgan[export]')")
    pytest.importorskip("onnx", reason="onnx is not installed (pip install 'medgan[export]')")
    export_generator(breast, tmp_path / "g.onnx", "onnx")
    y, z, ref = _reference(breast, n=5)  # another batch size than the export's example: the batch axis is dynamic
    sess = ort.InferenceSession(str(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"])
    out = sess.run(["image"], {"z": z.numpy(), "y": y.numpy()})[0]
    assert np.abs(out - ref.transpose(-1, -2).numpy()).max() < TOL


def test_monai_bundle_loads_and_runs(tmp_path, adrenal_ct):
    from monai.bundle import ConfigParser

    out = tmp_path / "bundle"
    export_generator(adrenal_ct, out, "bundle")
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} >= {
        "configs/metadata.json", "configs/inference.json", "models/model.ts", "models/model.pt"}
    meta = json.loads((out / "configs" / "metadata.json").read_text())
    assert meta["class_names"] == Sampler.from_checkpoint(adrenal_ct).class_names
    assert meta["intensity"]["source_min"] == 0.0 and "to_source" in meta["intensity"]
    assert meta["spacing"] == [1.0, 1.5, 2.0] and meta["network_data_format"]["outputs"]["pred"]["spatial_shape"] \
        == [28, 28, 28]
    parser = ConfigParser()
    parser.read_config(str(out / "configs" / "inference.json"))
    parser["bundle_root"] = str(out)
    parser["num_samples"], parser["class_index"] = 3, 1
    images = parser.get_parsed_content("images")
    assert images.shape == (3, 1, 28, 28, 28) and images.min() >= -1 and images.max() <= 1
    src = parser.get_parsed_content("source_images")
    assert 0 <= float(src.min()) and float(src.max()) <= 255
    # the same network as the Sampler's: the TorchScript module and medgan's module with models/model.pt
    y, z, ref = _reference(adrenal_ct, n=4)
    net = parser.get_parsed_content("network")
    assert (net(z, y) - ref).abs().max() < TOL  # 3D volumes: MONAI's layout is medgan's
    module = parser.get_parsed_content("network_def")
    module.load_state_dict(torch.load(out / "models" / "model.pt", weights_only=True))
    assert (module.eval()(z, y) - ref).abs().max() < TOL


def test_export_cli_and_errors(tmp_path, breast, medgan_cli):
    r = medgan_cli("export", breast, "--format", "torchscript", "--out", tmp_path / "g.pt")
    assert r.returncode == 0 and (tmp_path / "g.pt").is_file(), r.stderr
    r = medgan_cli("export", breast, "--format", "torchscript", "--out", tmp_path / "g.pt")
    assert r.returncode != 0 and r.stderr.startswith("medgan: error:") and "--overwrite" in r.stderr
    r = medgan_cli("export", breast, "--format", "tflite", "--out", tmp_path / "x")
    assert r.returncode != 0 and "torchscript, onnx, bundle" in r.stderr

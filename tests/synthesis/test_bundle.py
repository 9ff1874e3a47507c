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


def test_torchscript_output_needs_no_grad(tmp_path, breast):
    """An inference module: ``G(z, y).numpy()`` works as it is (no torch.no_grad(), no .detach())."""
    export_generator(breast, tmp_path / "g.pt", "torchscript")
    g = torch.jit.load(str(tmp_path / "g.pt"))
    y, z, ref = _reference(breast, n=3)
    out = g(z, y)
    assert not out.requires_grad and not any(p.requires_grad for p in g.parameters())
    assert np.abs(out.numpy() - ref.transpose(-1, -2).numpy()).max() < TOL
    with torch.inference_mode():
        assert g(z, y).shape == (3, 1, 28, 28)


def _bundle_env():
    import os
    import sys

    # the bundle's network is TorchScript: the run needs monai (and fire for the CLI), not medgan
    return {**os.environ, "PYTHONPATH": ""}, sys.executable


def test_bundle_runs_with_monai_bundle_cli_and_writes_images(tmp_path, breast):
    """``python -m monai.bundle run --config_file configs/inference.json --meta_file configs/metadata.json`` in
    the bundle's folder writes num_samples images of every class, in the training data's range and dtype."""
    import subprocess

    pytest.importorskip("fire", reason="python -m monai.bundle needs fire (pip install 'medgan[bundle]')")
    from monai.bundle import ConfigParser
    from monai.transforms import LoadImage

    out = tmp_path / "bundle"
    export_generator(breast, out, "bundle")
    assert {"configs/logging.conf", "docs/README.md", "docs/LICENSE"} <= {
        p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    env, python = _bundle_env()
    r = subprocess.run([python, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json",
                        "--meta_file", "configs/metadata.json", "--num_samples", "2"],
                       cwd=out, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    written = sorted(p.name for p in (out / "eval").iterdir())
    assert written == ["malignant_0000.png", "malignant_0001.png", "normal_benign_0000.png", "normal_benign_0001.png"]
    # the files hold the network's images for the config's seed, mapped to the training data's values
    parser = ConfigParser()
    parser.read_config(str(out / "configs" / "inference.json"))
    parser["bundle_root"], parser["num_samples"] = str(out), 2
    want = parser.get_parsed_content("output_images")
    got = LoadImage(image_only=True)(str(out / "eval" / "normal_benign_0001.png"))
    assert np.array_equal(np.asarray(got, dtype=np.float64), want[3, 0].numpy().astype(np.float64))


def test_bundle_runs_with_monai_bundle_run_function(tmp_path, adrenal_ct, monkeypatch):
    """``monai.bundle.run(config_file=..., meta_file=..., bundle_root=...)`` from another folder writes NIfTI
    volumes with the model grid's spacing to the configured output_dir."""
    import nibabel as nib
    from monai.bundle import run

    out = tmp_path / "bundle"
    export_generator(adrenal_ct, out, "bundle")
    monkeypatch.chdir(tmp_path)
    run(config_file=str(out / "configs" / "inference.json"), meta_file=str(out / "configs" / "metadata.json"),
        logging_file=False, bundle_root=str(out), output_dir=str(tmp_path / "synth"), num_samples=1,
        class_index=Sampler.from_checkpoint(adrenal_ct).class_names[1])  # a name works as well as an index
    files = sorted((tmp_path / "synth").iterdir())
    assert [p.name for p in files] == [f"{Sampler.from_checkpoint(adrenal_ct).class_names[1]}_0000.nii.gz"]
    img = nib.load(files[0])
    assert img.shape[:3] == (28, 28, 28) and np.allclose(np.diag(img.affine)[:3], [1.0, 1.5, 2.0])


def test_bundle_spacing_agrees_with_the_checkpoint(tmp_path, breast):
    """BreastMNIST records no spacing: the bundle says null, as augment.json and ``info checkpoint`` do."""
    from medgan.synthesis.export import augment
    from medgan.training.info import checkpoint_info

    export_generator(breast, tmp_path / "bundle", "bundle")
    meta = json.loads((tmp_path / "bundle" / "configs" / "metadata.json").read_text())
    augment(breast, tmp_path / "aug", n=1, progress=False)
    info = json.loads((tmp_path / "aug" / "augment.json").read_text())
    assert meta["spacing"] is None and info["spacing"] is None
    assert not checkpoint_info(breast).get("spacing")


def test_export_says_which_checkpoint_file_it_exports(tmp_path, breast, medgan_cli):
    """A run folder without best.pt gives last.pt: stderr says so before the export, the summary too."""
    import shutil

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(breast, run / "checkpoints" / "last.pt")
    r = medgan_cli("export", run, "--format", "torchscript", "--out", tmp_path / "g.pt")
    assert r.returncode == 0, r.stderr
    said = f"checkpoint: {run / 'checkpoints' / 'last.pt'} (the run's last checkpoint; it has no best.pt"
    assert said in r.stderr and said in r.stdout
    seen = []
    export_generator(run, tmp_path / "h.pt", "torchscript", log=lambda s: seen.append((s, (tmp_path / "h.pt").exists())))
    assert len(seen) == 1 and seen[0][0].startswith(said) and seen[0][1] is False

"""Tests for medgan.synthesis.sampler: loading checkpoints, per-sample seeds, classes, output spaces, redraws, speed paths."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import make_checkpoint, real_meta

from medgan.errors import CheckpointError, MedganError
from medgan.synthesis.sampler import Sampler


def test_from_checkpoint_attributes(breast):
    s = Sampler.from_checkpoint(breast)
    assert s.class_names == ["malignant", "normal, benign"]
    assert s.step == 7 and s.used_ema
    assert len(s.checkpoint_sha256) == 64
    assert s.meta["train_counts"] == [147, 399]
    assert s.shape == (1, 28, 28)
    assert not s.generator.training


def test_sample_shapes_ranges_and_order(breast):
    s = Sampler.from_checkpoint(breast)
    x, y = s.sample(4, seed=3)
    assert x.shape == (8, 1, 28, 28) and x.dtype == torch.float32
    assert y.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert x.min() >= -1 and x.max() <= 1 and x.std() > 0.1
    xs, ys = s.sample(4, seed=3, out="source")
    assert isinstance(xs, np.ndarray) and xs.dtype == np.uint8 and xs.shape == (8, 1, 28, 28)
    np.testing.assert_array_equal(xs, np.rint((x.numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8))


def test_identity_independent_of_batch_size_and_request(breast):
    s = Sampler.from_checkpoint(breast)
    x, _ = s.sample(6, seed=5, batch_size=256)
    x2, _ = s.sample(6, seed=5, batch_size=4)
    torch.testing.assert_close(x, x2, atol=1e-5, rtol=0)
    # a sample of class 1 is the same whether class 0 is requested too, and n=3 is a prefix of n=6
    x1, y1 = s.sample(3, classes=["normal, benign"], seed=5)
    assert y1.tolist() == [1, 1, 1]
    torch.testing.assert_close(x1, x[6:9], atol=1e-5, rtol=0)
    x3, _ = s.sample(6, seed=6)
    assert (x3 - x).abs().max() > 0.1  # another seed, other samples


def test_classes_by_index_name_and_errors(breast):
    s = Sampler.from_checkpoint(breast)
    assert s.resolve_classes(["normal, benign", 0, "1"]) == [1, 0]
    assert s.resolve_classes("MALIGNANT") == [0]
    with pytest.raises(MedganError, match="valid classes.*malignant.*normal, benign"):
        s.sample(2, classes=["benign"])
    with pytest.raises(MedganError, match="unknown class 5"):
        s.sample(2, classes=[5])
    with pytest.raises(MedganError, match="positive"):
        s.sample(0)


def test_iter_batches_streams_with_seeds(breast):
    s = Sampler.from_checkpoint(breast)
    batches = list(s.iter_batches(5, seed=1, batch_size=4))
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    seeds = np.concatenate([b[2] for b in batches])
    assert len(set(seeds.tolist())) == 10 and (seeds >= 0).all()
    # a manifest seed regenerates its sample
    y = torch.cat([b[1] for b in batches])
    x = torch.cat([b[0] for b in batches])
    torch.testing.assert_close(s.generate(y[7:8], seeds[7:8]), x[7:8], atol=1e-5, rtol=0)


def test_ema_and_raw_generators_differ(breast):
    a, _ = Sampler.from_checkpoint(breast, use_ema=True).sample(2)
    b, _ = Sampler.from_checkpoint(breast, use_ema=False).sample(2)
    assert (a - b).abs().max() > 1e-3


def test_filter_hook_redraws_flagged_samples(breast):
    s = Sampler.from_checkpoint(breast)
    calls = {"n": 0}

    def flag_class0_once(x, y):  # flag every class-0 sample on the first call only
        calls["n"] += 1
        return (y == 0) if calls["n"] == 1 else torch.zeros(len(y), dtype=torch.bool)

    plain = next(s.stream(3, seed=2))
    filt = next(s.stream(3, seed=2, filter_fn=flag_class0_once))
    assert filt.redraws.tolist() == [1, 1, 1, 0, 0, 0]
    assert (filt.seeds[:3] != plain.seeds[:3]).all() and (filt.seeds[3:] == plain.seeds[3:]).all()
    assert (filt.x[:3] - plain.x[:3]).abs().max() > 0.1
    torch.testing.assert_close(filt.x[3:], plain.x[3:])
    # bounded: an always-true filter stops after max_redraws
    always = next(s.stream(2, seed=2, filter_fn=lambda x, y: torch.ones(len(y), dtype=torch.bool), max_redraws=3))
    assert always.redraws.tolist() == [3, 3, 3, 3]


def test_bad_checkpoints(tmp_path, breast):
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(breast.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated"):
        Sampler.from_checkpoint(trunc)
    with pytest.raises(CheckpointError, match="not found"):
        Sampler.from_checkpoint(tmp_path / "missing.pt")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not a medgan checkpoint"):
        Sampler.from_checkpoint(other)


def test_no_ema_in_checkpoint_falls_back(tmp_path):
    p = make_checkpoint(tmp_path / "noema.pt", real_meta("breastmnist"), ema=False)
    s = Sampler.from_checkpoint(p, use_ema=True)
    assert not s.used_ema
    assert s.sample(1)[0].shape == (2, 1, 28, 28)


def test_fast_path_is_independent_of_batch_size_and_workers(breast):
    for amp in ("off", "bf16"):
        s = Sampler.from_checkpoint(breast, amp=amp)
        ref, _ = s.sample(40, seed=5, batch_size=80)
        for bs in (1, 3, 17, 33):
            assert torch.equal(s.sample(40, seed=5, batch_size=bs)[0], ref), (amp, bs)
        threads = torch.get_num_threads()
        got = torch.cat([b.x for b in s.stream(40, seed=5, batch_size=7, workers=3)])
        assert torch.equal(got, ref), amp
        assert torch.get_num_threads() == threads  # restored after the parallel stream


def test_parallel_stream_restores_threads_when_stopped_early(breast):
    s = Sampler.from_checkpoint(breast)
    threads = torch.get_num_threads()
    stream = s.stream(50, seed=1, batch_size=4, workers=2)
    first = next(stream)
    assert torch.get_num_threads() == 1 and len(first.y) == 4
    stream.close()
    assert torch.get_num_threads() == threads
    with pytest.raises(MedganError, match="workers"):
        next(s.stream(2, workers=0))


def test_bf16_is_close_to_fp32_and_repeatable(breast):
    a = Sampler.from_checkpoint(breast, amp="bf16")
    x, _ = a.sample(8, seed=1)
    x2, _ = Sampler.from_checkpoint(breast, amp="bf16").sample(8, seed=1)
    ref, _ = Sampler.from_checkpoint(breast).sample(8, seed=1)
    assert torch.equal(x, x2)
    assert 0 < (x - ref).abs().max() < 0.1
    with pytest.raises(MedganError, match="amp"):
        Sampler.from_checkpoint(breast, amp="fp8")


def test_to_source_matches_the_numpy_conversion(breast):
    from medgan.data.dataset import Intensity
    from medgan.data.preprocess import from_model_tensor

    s = Sampler.from_checkpoint(breast)
    x = torch.rand(64, 1, 28, 28) * 2.2 - 1.1  # beyond [-1, 1] too: clipped
    x[0, 0, 0, :5] = torch.tensor([-1.0, 1.0, 0.0, 0.5 / 127.5 - 1, 1.5 / 127.5 - 1])  # exact .5 ties
    for inten in ({"min": 0.0, "max": 255.0, "dtype": "uint8"}, {"min": -1024.0, "max": 3071.0, "dtype": "int16"},
                  {"min": 3.5, "max": 1000.25, "dtype": "uint16"}, {"min": 0.0, "max": 1.0, "dtype": "float32"}):
        s.meta["intensity"] = inten
        got = s.to_source(x)
        want = from_model_tensor(x, Intensity.from_dict(inten))
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_sampling_from_a_checkpoint_does_not_import_monai(breast):
    code = ("import sys; from medgan.synthesis.sampler import Sampler; "
            f"s = Sampler.from_checkpoint({str(breast)!r}); s.sample(2); print('monai' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------ counterfactual pairs


def test_pairs_share_one_latent_and_differ_only_in_class(tmp_path, breast):
    from helpers import classless_checkpoint

    from medgan.synthesis.seeds import derive_pair_seeds

    s = Sampler.from_checkpoint(breast)
    batches = list(s.stream(5, seed=3, pairs=True, batch_size=3))
    assert all(len(b.y) == 2 for b in batches)  # batch_size rounded down to whole pairs (2 classes)
    y = torch.cat([b.y for b in batches])
    pair = np.concatenate([b.pair for b in batches])
    seeds = np.concatenate([b.seeds for b in batches])
    assert y.tolist() == [0, 1] * 5 and pair.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert np.concatenate([b.index for b in batches]).tolist() == pair.tolist()  # index within class = pair id
    np.testing.assert_array_equal(seeds[0::2], seeds[1::2])
    np.testing.assert_array_equal(seeds[0::2], derive_pair_seeds(3, np.arange(5)))
    x = torch.cat([b.x for b in batches])
    assert all(not torch.equal(x[2 * k], x[2 * k + 1]) for k in range(5))  # the class still changes the image
    # the same bytes in one big batch, and a sample is what generate() makes of its class and the pair's seed
    big = next(s.stream(5, seed=3, pairs=True, batch_size=256))
    assert torch.equal(big.x, x)
    assert torch.equal(s.generate(np.array([1]), seeds[:1]), x[1:2])
    # a generator that ignores the class (cond_scale 0): the members of a pair are the same image
    free = Sampler.from_checkpoint(classless_checkpoint(tmp_path / "free.pt", real_meta("breastmnist")))
    xf = next(free.stream(4, seed=3, pairs=True)).x
    assert torch.equal(xf[0::2], xf[1::2]) and not torch.equal(xf[0], xf[2])
    with pytest.raises(MedganError, match="number of pairs"):
        next(s.stream(0, pairs=True))
    with pytest.raises(MedganError, match="not per-class counts"):
        next(s.stream(counts={0: 2}, pairs=True))


def test_pair_redraws_keep_the_pair_together(breast):
    s = Sampler.from_checkpoint(breast)
    calls = []

    def flag_class1_of_pair1_once(x, y):
        calls.append(1)
        return (y == 1) & torch.tensor([False, False, True, True, False, False]) & (len(calls) == 1)

    plain = next(s.stream(3, pairs=True))
    b = next(s.stream(3, pairs=True, filter_fn=flag_class1_of_pair1_once))
    assert b.redraws.tolist() == [0, 0, 1, 1, 0, 0]  # both members of pair 1 were redrawn
    assert b.seeds[2] == b.seeds[3] != plain.seeds[2]
    assert torch.equal(b.x[[0, 1, 4, 5]], plain.x[[0, 1, 4, 5]])
    assert not torch.equal(b.x[2], plain.x[2]) and not torch.equal(b.x[3], plain.x[3])

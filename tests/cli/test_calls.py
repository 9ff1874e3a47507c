"""What each command passes to the library: the library function is replaced by a fake that records its
arguments, the command runs through typer's CliRunner, and the test checks flags -> config keys, paths, the
restart/overwrite flags and that the result's summary is printed. So a failure here is a CLI failure; the
end-to-end tests beside this file check the whole chain."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from medgan import cli
from medgan.cli import app

runner = CliRunner()


class Fake:
    """Stands in for a library function: records each call, returns a result whose summary() is known."""

    def __init__(self) -> None:
        self.calls: list[SimpleNamespace] = []

    def __call__(self, *args, **kwargs):
        self.calls.append(SimpleNamespace(args=args, kwargs=kwargs))
        return SimpleNamespace(summary=lambda *a: "FAKE SUMMARY" + (f" {a[0]}" if a else ""))

    @property
    def call(self) -> SimpleNamespace:
        assert len(self.calls) == 1, self.calls
        return self.calls[0]


@pytest.fixture
def fake(monkeypatch):
    """``fake("medgan.synthesis.export.augment")``: replace that library function by a recording :class:`Fake`."""

    def install(target: str) -> Fake:
        module, name = target.rsplit(".", 1)
        f = Fake()
        monkeypatch.setattr(f"{module}.{name}", f)
        return f

    return install


def invoke(*args) -> str:
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, (r.output, r.exception)
    return r.output


# ---------------------------------------------------------------------------------------------- train


def test_train_passes_flags_as_config_and_the_run_folder(tmp_path, fake):
    train = fake("medgan.training.run.train")
    out = invoke("train", "--dataset", "breastmnist", "--out", tmp_path / "run", "--steps", 5, "--batch-size", 8,
                 "--size", 32, "--scarce", "1=0.2", "--scarce", "0=10", "--seed", 3, "--loss", "hinge",
                 "--amp", "bf16", "--device", "cpu", "--data-dir", tmp_path / "d", "--resume", "--quiet")
    (cfg, run), kw = train.call.args, train.call.kwargs
    assert run == tmp_path / "run" and kw == {"resume": True}
    assert (cfg.data.dataset, cfg.data.size, cfg.data.scarce, cfg.data.data_dir) == \
        ("breastmnist", 32, ["1=0.2", "0=10"], str(tmp_path / "d"))
    assert (cfg.train.steps, cfg.train.batch_size, cfg.train.seed, cfg.train.loss, cfg.train.amp,
            cfg.train.device, cfg.train.progress) == (5, 8, 3, "hinge", "bf16", "cpu", False)
    assert "FAKE SUMMARY" in out


def test_augment_passes_from_real_and_strength(tmp_path, fake):
    augment = fake("medgan.synthesis.export.augment")
    invoke("augment", "--checkpoint", tmp_path / "c.pt", "--out", tmp_path / "o", "--n", 2, "--from-real",
           "--strength", 0.3, "--dataset", "breastmnist", "--scarce", "0=0.5")
    opts, kw = augment.call.args[2], augment.call.kwargs
    assert opts.from_real is True and opts.strength == 0.3 and opts.reject_near_copies is False
    assert (kw["train_data"].dataset, kw["train_data"].scarce) == ("breastmnist", ["0=0.5"])
    invoke("augment", "--checkpoint", tmp_path / "c.pt", "--out", tmp_path / "o", "--n", 2)
    assert augment.calls[1].args[2].from_real is False and augment.calls[1].args[2].strength is None


def test_train_defaults_come_from_the_config_file_and_dry_run_calls_nothing(tmp_path, fake):
    train = fake("medgan.training.run.train")
    invoke("train", "--config", "breastmnist", "--out", tmp_path / "run")
    cfg = train.call.args[0]
    assert cfg.data.dataset == "breastmnist" and cfg.train.progress is True and train.call.kwargs == {"resume": False}
    out = invoke("train", "--dataset", "phantom2d", "--out", tmp_path / "run", "--steps", 7, "--dry-run")
    assert len(train.calls) == 1 and "steps: 7" in out


def test_train_model_flag_sets_the_kind(tmp_path, fake):
    train = fake("medgan.training.run.train")
    invoke("train", "--dataset", "breastmnist", "--out", tmp_path / "run", "--model", "translator")
    assert train.call.args[0].model.kind == "translator"
    invoke("train", "--config", "breastmnist_translator", "--out", tmp_path / "run2")
    assert train.calls[1].args[0].model.kind == "translator"
    r = runner.invoke(app, ["train", "--out", str(tmp_path / "r"), "--model", "unet"])
    assert "invalid value for 'model.kind'" in str(r.exception) and not train.calls[2:]


# -------------------------------------------------------------------------------------------- augment


def test_augment_passes_flags_as_options_and_the_named_training_data(tmp_path, fake):
    augment = fake("medgan.synthesis.export.augment")
    out = invoke("augment", "--checkpoint", tmp_path / "run", "--out", tmp_path / "o", "--n", 4,
                 "--class", "malignant", "--class", "1", "--format", "npz", "--seed", 3, "--batch-size", 16,
                 "--overwrite", "--no-ema", "--device", "cpu", "--amp", "bf16", "--workers", 2,
                 "--reject-near-copies", "--dataset", "breastmnist", "--scarce", "1=0.2", "--split-seed", 4,
                 "--data-dir", tmp_path / "d", "--quiet")
    (ck, o, opts), kw = augment.call.args, augment.call.kwargs
    assert ck == tmp_path / "run" and o == tmp_path / "o"  # the run folder as given: the library resolves it
    assert (opts.n, opts.classes, opts.format, opts.seed, opts.batch_size, opts.overwrite, opts.use_ema,
            opts.device, opts.amp, opts.workers, opts.reject_near_copies, opts.balance) == \
        (4, ["malignant", "1"], "npz", 3, 16, True, False, "cpu", "bf16", 2, True, False)
    d = kw.pop("train_data")
    assert kw == {"progress": False, "log": None}  # --quiet: the summary names the checkpoint file
    assert (d.dataset, d.scarce, d.split_seed, d.data_dir) == ("breastmnist", ["1=0.2"], 4, str(tmp_path / "d"))
    assert "FAKE SUMMARY" in out


def test_augment_names_training_data_only_when_the_user_did(tmp_path, fake):
    augment = fake("medgan.synthesis.export.augment")
    invoke("augment", "--checkpoint", tmp_path / "c.pt", "--out", tmp_path / "o", "--balance",
           "--reject-near-copies")
    opts, kw = augment.calls[0].args[2], augment.calls[0].kwargs
    assert opts.balance and opts.reject_near_copies and opts.overwrite is False
    assert kw == {"train_data": None, "progress": True, "log": cli._to_stderr}  # not the built-in default dataset;
    # which checkpoint file, on stderr before the work
    invoke("augment", "--checkpoint", tmp_path / "c.pt", "--out", tmp_path / "o", "--n", 1, "-c", "breastmnist")
    assert augment.calls[1].kwargs["train_data"].dataset == "breastmnist"  # a --config file names it too


# ------------------------------------------------------------------------------------------- evaluate


def test_evaluate_is_one_call_with_the_checkpoint_as_given(tmp_path, fake):
    evaluate = fake("medgan.evaluation.evaluate.evaluate")
    run = tmp_path / "run"  # need not exist: resolving it (best.pt / last.pt) is the library's job
    out = invoke("evaluate", "--dataset", "breastmnist", "--scarce", "1=0.2", "--checkpoint", run,
                 "--arms", "baseline,gan", "--ratio", "0.5,balance", "--seeds", 3, "--primary", "auroc",
                 "--target-specificity", 0.9, "--classifier", "resnet18", "--epochs", 2, "--batch-size", 16,
                 "--size", 28, "--out", tmp_path / "rep", "--data-dir", tmp_path / "d", "--filter-confidence", 0.5,
                 "--no-quality", "--no-privacy", "--threads", 1, "--device", "cpu", "--group-size", 2,
                 "--restart", "--quiet")
    (cfg,), kw = evaluate.call.args, evaluate.call.kwargs
    assert kw == {"checkpoint": run, "synthetic": None, "out_dir": tmp_path / "rep", "restart": True, "log": None,
                  "progress": False}
    assert (cfg.data.dataset, cfg.data.scarce, cfg.data.size, cfg.data.data_dir) == \
        ("breastmnist", ["1=0.2"], 28, str(tmp_path / "d"))
    ev = cfg.evaluate
    assert (ev.arms, ev.ratios, ev.seeds, ev.primary, ev.target_specificity, ev.classifier, ev.epochs,
            ev.batch_size, ev.filter_confidence, ev.quality, ev.privacy, ev.threads, ev.device, ev.group_size) == \
        (["baseline", "gan"], [0.5, "balance"], 3, "auroc", 0.9, "resnet18", 2, 16, 0.5, False, False, 1, "cpu", 2)
    assert f"FAKE SUMMARY {tmp_path / 'rep'}" in out


def test_evaluate_logs_and_shows_progress_unless_quiet(tmp_path, fake):
    evaluate = fake("medgan.evaluation.evaluate.evaluate")
    invoke("evaluate", "--dataset", "phantom2d", "--synthetic", tmp_path / "s", "--out", tmp_path / "rep")
    kw = evaluate.call.kwargs
    assert kw["synthetic"] == tmp_path / "s" and kw["checkpoint"] is None and kw["restart"] is False
    assert callable(kw["log"]) and kw["progress"] is True


# --------------------------------------------------------------------------------------------- export


@pytest.mark.parametrize("flags, use_ema, overwrite", [([], True, False), (["--no-ema", "--overwrite"], False, True)])
def test_export_passes_the_checkpoint_format_and_flags(tmp_path, fake, flags, use_ema, overwrite):
    export = fake("medgan.synthesis.bundle.export_generator")
    out = invoke("export", tmp_path / "run", "--format", "onnx", "--out", tmp_path / "g.onnx", *flags)
    assert export.call.args == (Path(tmp_path / "run"), tmp_path / "g.onnx", "onnx")
    assert export.call.kwargs == {"use_ema": use_ema, "overwrite": overwrite, "log": cli._to_stderr}
    assert "FAKE SUMMARY" in out

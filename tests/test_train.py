"""train.py end to end on the tiny DIV2K fixture: runs, exact resume after kills and Ctrl-C, --ema, bad input."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import train
from utils import UserError, run_cli

# edsr 4 filters 1 block, 8 px LR patches: tiny enough that process start-up dominates
TINY = ["--profile", "edsr-16", "--scale", "2", "--num-filters", "4", "--num-res-blocks", "1", "--batch-size", "2",
        "--lr-patch", "8", "--validation-steps", "2", "--no-jit-compile"]


def train_env(**extra):
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="1")
    env.pop("SISR_TEST_KILL", None)
    env.update(extra)
    return env


def run_train(repo_root, *args, kill=None, timeout=300):
    env = train_env(**({"SISR_TEST_KILL": kill} if kill else {}))
    return subprocess.run([sys.executable, str(repo_root / "train.py"), *map(str, args)], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=timeout)


def final_state(run_dir):
    state = json.loads((Path(run_dir) / "state.json").read_text())
    with np.load(Path(run_dir) / state["checkpoint"]) as f:
        return state, {k: f[k] for k in f.files if k != "meta"}


def test_dry_run_prints_summary_and_seed_parameter_count(capsys):
    # a dry run never touches the dataset
    assert train.main(["--profile", "wdsr-b-32", "--scale", "2", "--print-model-summary", "--dry-run",
                       "--dataset", "/nonexistent"]) is None
    out = capsys.readouterr().out
    assert "Total params:" in out and "0.59M" in out


def test_short_run_with_ema_writes_args_checkpoints_and_logs(tiny_div2k, tmp_path, monkeypatch):
    """--ema end to end: the epoch checkpoint holds the averaged weights, the state both."""
    import keras

    import losses

    monkeypatch.chdir(tmp_path)
    run_dir = Path(train.main([*TINY, "--dataset", os.path.relpath(tiny_div2k), "--outdir", "runs", "--epochs", "1",
                               "--steps-per-epoch", "3", "--ema", "--ema-decay", "0.5"]))
    config = json.loads((run_dir / "args.json").read_text())
    assert config["num_filters"] == 4 and config["profile"] == "edsr-16" and config["ema"]
    assert config["dataset"] == str(tiny_div2k) and os.path.isabs(config["outdir"])  # paths stored absolute
    (checkpoint,) = (run_dir / "models").glob("epoch-001-psnr-*.keras")
    model = keras.models.load_model(checkpoint, compile=False)
    assert model(np.zeros((1, 5, 7, 3), "float32")).shape == (1, 10, 14, 3)
    state, arrays = final_state(run_dir)
    assert (state["epoch"], state["step"], state["global_step"]) == (1, 0, 3)
    weights = [keras.ops.convert_to_numpy(w) for w in model.weights]
    ema = [arrays[f"ema/generator/{k}"] for k in range(len(weights))]
    trained = [arrays[f"net/generator/{k}"] for k in range(len(weights))]
    assert all(np.array_equal(w, e) for w, e in zip(weights, ema))  # saved = EMA
    assert not all(np.allclose(w, t) for w, t in zip(weights, trained))  # ... which is not the trained weights
    # EMA with decay 0.5 over 3 steps: e3 = w3/2 + w2/4 + w1/8 + w0/8, checked on a bias (tiny magnitudes fine)
    assert any(np.abs(t - e).max() > 0 for t, e in zip(trained, ema))
    assert losses.checkpoint_loss_mode(path=checkpoint) == "l2"  # plain model: the default
    import tensorflow as tf

    tags = {}
    for which in ("train", "validation"):
        (events,) = (run_dir / "logs" / which).glob("events.out.tfevents.*")
        tags[which] = {v.tag for e in tf.compat.v1.train.summary_iterator(str(events)) for v in e.summary.value}
    assert {"loss", "mae", "learning_rate"} <= tags["train"]  # every loss term by name, and the learning rate
    assert {"psnr", "sr/0", "sr/1"} <= tags["validation"]  # the monitored metric and validation SR crops


def test_hr_only_dataset_with_on_the_fly_bicubic_lr(tiny_div2k, tmp_path):
    import shutil

    hr_only = tmp_path / "hr"
    for subset in ("train", "valid"):
        shutil.copytree(tiny_div2k / f"DIV2K_{subset}_HR", hr_only / f"DIV2K_{subset}_HR")
    run_dir = Path(train.main([*TINY, "--dataset", str(hr_only), "--lr-transform", "bicubic", "--outdir",
                               str(tmp_path / "runs"), "--epochs", "1", "--steps-per-epoch", "2"]))
    assert json.loads((run_dir / "state.json").read_text())["global_step"] == 2
    assert len(list((run_dir / "models").glob("epoch-001-psnr-*.keras"))) == 1


def test_realesrgan_loader_recipe_degradation_options_and_whole_image_validation(tiny_div2k):
    """--lr-transform realesrgan: --degradation reaches the pipeline (merged over the profile's dict), the
    --realesrgan-crop recipe feeds the loader, and validation degrades whole images (no crop, no sharpening)."""
    from training import config as schema

    args = ["-p", "rrdbnet-tiny", "--scale", "2", "--dataset", str(tiny_div2k), "--lr-transform", "realesrgan",
            "--lr-patch", "8", "--batch-size", "2", "--realesrgan-crop", "48", "--benchmark",
            "--degradation", "final_sinc_prob=0", "jpeg_range=[60,95]"]
    config = schema.resolve(schema.build_parser(args).parse_args(args))
    assert config["degradation"] == {"final_sinc_prob": 0, "jpeg_range": [60, 95]}
    from training import setup

    train_source, valid = setup.load_datasets(config)
    t = train_source.transform
    assert t.crop and t.config["final_sinc_prob"] == 0 and t.config["jpeg_range"] == [60, 95]
    assert train_source.hr_patch == 48 and not train_source.augment
    b = train_source.batch(0, 0)
    assert b["lr"].shape == (2, 8, 8, 3) and b["hr_usm"].shape == (2, 16, 16, 3)
    assert len(valid) == 2
    for k, pair in enumerate(valid):  # the whole (96x120) image, degraded once with its fixed generator
        assert pair.hr.shape == (96, 120, 3) and pair.lr.shape == (48, 60, 3) and pair.lr.dtype == np.uint8
        expected = t.whole_image(pair.hr, np.random.default_rng([0, k]))["lr"]
        np.testing.assert_array_equal(pair.lr, expected.round().clip(0, 255).astype(np.uint8))


def test_resume_is_exact_after_kills_and_ctrl_c_at_any_moment(repo_root, tiny_div2k, tmp_path):
    """One run interrupted four times (SIGKILL in a step, Ctrl-C in validation with --ema, SIGKILL while writing
    the resumable state, Ctrl-C mid-epoch) ends bit-identical to an uninterrupted run (TensorFlow CPU)."""
    args = [*TINY, "--dataset", tiny_div2k, "--epochs", "3", "--steps-per-epoch", "3", "--ema", "--ema-decay", "0.9"]
    ref = run_train(repo_root, *args, "--outdir", tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr
    (ref_dir,) = (tmp_path / "ref").iterdir()

    r = run_train(repo_root, *args, "--outdir", tmp_path / "run", kill="step:4")  # in epoch 2's first step
    assert r.returncode == -9
    (run_dir,) = (tmp_path / "run").iterdir()
    assert json.loads((run_dir / "state.json").read_text())["global_step"] == 3

    r = run_train(repo_root, "--resume", run_dir, kill="validation:1:INT")  # epoch 2's validation, EMA swapped in
    assert r.returncode == 130 and "--resume" in r.stderr, r.stderr
    state = json.loads((run_dir / "state.json").read_text())
    assert (state["epoch"], state["step"], state["global_step"]) == (1, 3, 6)  # steps done, epoch end pending
    assert state["checkpoint"].endswith("-interrupted.npz")
    assert [p.name for p in run_dir.glob("resume-*")] == [state["checkpoint"]]

    r = run_train(repo_root, "--resume", run_dir, kill="checkpoint:1")  # writing the state after epoch 2
    assert r.returncode == -9
    assert json.loads((run_dir / "state.json").read_text()) == state  # the half-written file is not referenced

    r = run_train(repo_root, "--resume", run_dir, kill="step:2:INT")  # Ctrl-C after 2 steps of epoch 3
    assert r.returncode == 130, r.stderr
    state = json.loads((run_dir / "state.json").read_text())
    assert (state["epoch"], state["step"], state["global_step"]) == (2, 2, 8)  # the exact mid-epoch position

    r = run_train(repo_root, "--resume", run_dir)
    assert r.returncode == 0, r.stderr
    assert "epoch 3, step 2" in r.stdout  # continues at the next batch
    state, arrays = final_state(run_dir)
    ref_state, ref_arrays = final_state(ref_dir)
    assert state["global_step"] == ref_state["global_step"] == 9
    assert state["best"] == ref_state["best"]
    assert sorted(arrays) == sorted(ref_arrays)
    for key in ref_arrays:  # weights, Adam moments and step, EMA: exact
        np.testing.assert_array_equal(arrays[key], ref_arrays[key], err_msg=key)
    assert sorted(p.name for p in (run_dir / "models").iterdir()) == sorted(
        p.name for p in (ref_dir / "models").iterdir())
    assert not list(run_dir.glob(".*tmp*"))  # the killed write's temporary file was cleaned up

    # --resume --epochs N <= finished epochs: nothing to do, args.json untouched
    before = (run_dir / "args.json").read_bytes()
    assert train.main(["--resume", str(run_dir), "--epochs", "2"]) == str(run_dir)
    assert (run_dir / "args.json").read_bytes() == before


def cli_error(capsys, argv):
    """(exit status, stderr lines) of train.py's CLI entry in-process."""
    with pytest.raises(SystemExit) as e:
        run_cli(train.main, [str(a) for a in argv])
    return e.value.code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("bad, option", [
    (["--lr-patch", "0"], "--lr-patch"), (["--lr-patch", "-4"], "--lr-patch"),
    (["--batch-size", "0"], "--batch-size"), (["--batch-size", "-1"], "--batch-size"),
    (["--num-filters", "0"], "--num-filters"), (["--learning-rate-step-size", "200", "100"], "--learning-rate-step"),
    (["--steps-per-epoch", "0"], "--steps-per-epoch"), (["--epochs", "-1"], "--epochs"),
    (["--learning-rate", "-0.001"], "--learning-rate"), (["--validation-steps", "0"], "--validation-steps"),
    (["--batch-size", "x"], "--batch-size"), (["--monitor", "nope"], "nope"), (["--ema-decay", "1.5"], "--ema-decay"),
    (["--degradation", "nosuch=1"], "nosuch"), (["--degradation", "jpeg_prob=2"], "--degradation"),
    (["--lr-transform", "realesrgan", "--realesrgan-crop", "31"], "--realesrgan-crop"),
])
def test_bad_input_is_one_line_error_and_no_run_dir(capsys, tiny_div2k, tmp_path, bad, option):
    code, lines = cli_error(capsys, [*TINY, "--dataset", tiny_div2k, "--outdir", tmp_path / "out", "--epochs", "1",
                                     "--steps-per-epoch", "1", *bad])
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and option in lines[0], lines
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_resume_errors(capsys, tiny_div2k, tmp_path):
    a_file = tmp_path / "args.json"
    a_file.write_text("{}")
    code, lines = cli_error(capsys, ["--resume", a_file])
    assert code == 2 and len(lines) == 1 and "is a file" in lines[0]
    code, lines = cli_error(capsys, ["--resume", tmp_path, "--scale", "3"])
    assert code == 2 and len(lines) == 1 and "--scale" in lines[0]
    code, lines = cli_error(capsys, ["--resume", tmp_path, "-p", "edsr-16"])
    assert code == 2 and "--profile" in lines[0]
    code, lines = cli_error(capsys, ["--resume", tmp_path])
    assert code == 2 and len(lines) == 1 and ("args.json" in lines[0] or "state.json" in lines[0])
    (tmp_path / "args.json").write_text(json.dumps({"profile": "edsr-16", "epochs": 3}))
    (tmp_path / "state.json").write_text(json.dumps({"epoch": 1, "best_psnr": 30.0, "step": 10,
                                                     "checkpoint": "resume-001.keras"}))  # the seed's format
    code, lines = cli_error(capsys, ["--resume", tmp_path])
    assert code == 2 and len(lines) == 1 and "older train.py" in lines[0]


def test_missing_dataset_is_one_line_error(repo_root, tmp_path):
    result = run_train(repo_root, "--dataset", tmp_path / "nope", "--outdir", tmp_path, *TINY)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "nope" in lines[0], result.stderr


def test_unwritable_outdir_is_an_error(tiny_div2k, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(UserError, match="file"):
        train.main([*TINY, "--dataset", str(tiny_div2k), "--outdir", str(blocker / "out"), "--epochs", "1",
                    "--steps-per-epoch", "1"])


def test_pretrained_model_of_another_architecture_is_an_error(tiny_div2k, tmp_path):
    from model import build_model

    other = tmp_path / "other.keras"
    build_model("edsr", 2, num_filters=8, num_res_blocks=1).save(other)
    with pytest.raises(UserError, match="other.keras"):
        train.main(["--profile", "wdsr-a-8", "--dataset", str(tiny_div2k), "--outdir", str(tmp_path),
                    "--pretrained-model", str(other), "--epochs", "1", "--steps-per-epoch", "1", "--lr-patch", "8"])


def test_gram_flags_need_pred_logvar():
    with pytest.raises(UserError, match="pred_logvar"):
        train.main(["-p=sr-resnet", "-s=4", "--attention", "--dry-run"])


def test_seed_gram_command_spellings_parse():
    args = train.build_parser().parse_args(["-p=sr-resnet", "-s=4", "-plv", "-att", "-bag", "-o", "./x"])
    assert (args.profile, args.scale, args.pred_logvar, args.attention, args.block_attention_gradient) == (
        "sr-resnet", 4, True, True, True)
    args = train.build_parser().parse_args(["-p=sr-resnet", "-s=4", "--pred_logvar", "--attention",
                                            "--block_attention_gradient"])
    assert args.pred_logvar and args.block_attention_gradient


def test_seed_gram_command_trains_and_benches_with_uncertainty(tiny_div2k, tmp_path):
    """The GRAM seed command (few steps, tiny model, l1 mode), then bench.py reports uncertainty metrics for it;
    the loss mode is known from the checkpoint alone, also when loaded with compile=False."""
    import keras

    import bench
    import losses

    run_dir = Path(train.main(["-p=sr-resnet", "-s=4", "--pred_logvar", "--attention", "--block_attention_gradient",
                               "--loss-mode", "l1", "-o", str(tmp_path / "logvar_attention_grad_rescale"),
                               "--dataset", str(tiny_div2k), "--epochs", "1", "--steps-per-epoch", "2",
                               "--num-filters", "4", "--num-res-blocks", "1", "--batch-size", "2", "--lr-patch", "8",
                               "--validation-steps", "2", "--no-jit-compile"]))
    config = json.loads((run_dir / "args.json").read_text())
    assert config["pred_logvar"] and config["attention"] and config["block_attention_gradient"]
    (checkpoint,) = (run_dir / "models").glob("*.keras")
    model = keras.models.load_model(checkpoint, compile=False)
    assert model(np.zeros((1, 6, 5, 3), "float32")).shape == (1, 24, 20, 6)  # mean RGB + log-variance
    assert losses.checkpoint_loss_mode(model, path=checkpoint) == "l1"
    copy = tmp_path / "elsewhere.keras"  # no args.json beside it: read from the model file itself
    copy.write_bytes(checkpoint.read_bytes())
    assert losses.checkpoint_loss_mode(path=copy) == "l1"
    assert losses.checkpoint_loss_mode(keras.models.load_model(copy)) == "l1"

    out = tmp_path / "bench.json"
    bench.main(["--dataset", str(tiny_div2k), "-i", str(run_dir / "models"), "-o", str(out), "--no-progress",
                "--plots", str(tmp_path / "plots")])
    rows = json.loads((tmp_path / "bench.results.json").read_text())["rows"]
    assert set(rows[0]["uncertainty"]) >= {"nll", "ause_rmse", "spearman", "calibration_error"}


def test_help_shows_profile_defaults_and_profiles(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    text = capsys.readouterr().out
    assert "(default: None)" not in text
    assert "(profile wdsr-a-8: 32)" in " ".join(text.split())  # --num-filters
    assert all(name in text for name in ("wdsr-b-32", "edsr-16", "sr-resnet"))
    assert "threads" in " ".join(text.split())  # --workers runs threads and says so
    with pytest.raises(SystemExit):
        train.main(["-p", "edsr-16", "--help"])
    assert "profile edsr-16: 64" in " ".join(capsys.readouterr().out.split())

"""train.py end to end on the tiny DIV2K fixture: dry run, a short run, resume after a kill, bad input."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import train
from utils import UserError

TINY = ["--num-filters", "8", "--num-res-blocks", "1", "--batch-size", "2", "--lr-patch", "12",
        "--validation-steps", "3", "--no-jit-compile"]


def run_cli(repo_root, *args, timeout=300):
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, str(repo_root / "train.py"), *args], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_dry_run_prints_summary_and_seed_parameter_count(repo_root):
    result = run_cli(repo_root, "--profile", "wdsr-b-32", "--scale", "2", "--print-model-summary", "--dry-run",
                     "--dataset", "/nonexistent")  # a dry run never touches the dataset
    assert result.returncode == 0, result.stderr
    assert "Total params:" in result.stdout
    assert "0.59M" in result.stdout


def test_short_run_writes_args_and_loadable_checkpoint(tiny_div2k, tmp_path):
    import keras
    import numpy as np

    run_dir = Path(train.main(["--profile", "edsr-16", "--scale", "2", "--dataset", str(tiny_div2k), "--outdir",
                               str(tmp_path), "--epochs", "1", "--steps-per-epoch", "2", *TINY]))
    assert (run_dir / "args.txt").read_text().count("scale=2") == 1
    config = json.loads((run_dir / "args.json").read_text())
    assert config["num_filters"] == 8 and config["profile"] == "edsr-16"
    (checkpoint,) = (run_dir / "models").glob("epoch-001-psnr-*.keras")
    model = keras.models.load_model(checkpoint, compile=False)
    assert model(np.zeros((1, 5, 7, 3), "float32")).shape == (1, 10, 14, 3)
    assert list((run_dir / "logs").rglob("events.out.tfevents.*")), "TensorBoard logs missing"


def test_resume_continues_a_killed_run(repo_root, tiny_div2k, tmp_path):
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([sys.executable, str(repo_root / "train.py"), "--profile", "wdsr-b-8", "--scale", "2",
                             "--dataset", str(tiny_div2k), "--outdir", str(tmp_path), "--epochs", "4",
                             "--steps-per-epoch", "3", *TINY], cwd=repo_root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    state = None
    while time.time() < deadline and proc.poll() is None:
        states = list(tmp_path.glob("*/state.json"))
        if states:
            state = states[0]
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state is not None, "the run never finished its first epoch"
    killed_at = json.loads(state.read_text())
    assert killed_at["epoch"] >= 1 and killed_at["step"] == 3 * killed_at["epoch"]

    run_dir = Path(train.main(["--resume", str(state.parent)]))
    final = json.loads((run_dir / "state.json").read_text())
    assert final["epoch"] == 4
    assert final["step"] == 12  # optimizer step carried on: 4 epochs x 3 steps, none repeated or lost
    assert len(list((run_dir / "models").glob("epoch-004-*.keras"))) == 1


def test_missing_dataset_is_one_line_error(repo_root, tmp_path):
    result = run_cli(repo_root, "--dataset", str(tmp_path / "nope"), "--outdir", str(tmp_path), *TINY)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "nope" in lines[0], result.stderr


def test_unwritable_outdir_is_an_error(tiny_div2k, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(UserError, match="file"):
        train.main(["--dataset", str(tiny_div2k), "--outdir", str(blocker / "out"), "--epochs", "1",
                    "--steps-per-epoch", "1", *TINY])


def test_pretrained_model_of_another_architecture_is_an_error(tiny_div2k, tmp_path):
    from model import build_model

    other = tmp_path / "other.keras"
    build_model("edsr", 2, num_filters=8, num_res_blocks=1).save(other)
    with pytest.raises(UserError, match="other.keras"):
        train.main(["--profile", "wdsr-a-8", "--dataset", str(tiny_div2k), "--outdir", str(tmp_path),
                    "--pretrained-model", str(other), "--epochs", "1", "--steps-per-epoch", "1", *TINY])


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
    """The GRAM seed command (few steps, tiny model), then bench.py reports uncertainty metrics for it."""
    import keras
    import numpy as np

    import bench

    run_dir = Path(train.main(["-p=sr-resnet", "-s=4", "--pred_logvar", "--attention", "--block_attention_gradient",
                               "-o", str(tmp_path / "logvar_attention_grad_rescale"), "--dataset", str(tiny_div2k),
                               "--epochs", "1", "--steps-per-epoch", "2", *TINY]))
    config = json.loads((run_dir / "args.json").read_text())
    assert config["pred_logvar"] and config["attention"] and config["block_attention_gradient"]
    (checkpoint,) = (run_dir / "models").glob("*.keras")
    model = keras.models.load_model(checkpoint, compile=False)
    assert model(np.zeros((1, 6, 5, 3), "float32")).shape == (1, 24, 20, 6)  # mean RGB + log-variance

    out = tmp_path / "bench.json"
    bench.main(["--dataset", str(tiny_div2k), "-i", str(run_dir / "models"), "-o", str(out), "--no-progress",
                "--plots", str(tmp_path / "plots")])
    rows = json.loads((tmp_path / "bench.results.json").read_text())["rows"]
    assert set(rows[0]["uncertainty"]) >= {"nll", "ause_rmse", "spearman", "calibration_error"}
    assert sorted(p.name.rsplit("_", 1)[1] for p in (tmp_path / "plots").glob("*.png")) == [
        "calibration.png", "sparsification.png"]


def test_ctrl_c_saves_a_resumable_checkpoint(repo_root, tiny_div2k, tmp_path):
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([sys.executable, str(repo_root / "train.py"), "--profile", "wdsr-b-8", "--scale", "2",
                             "--dataset", str(tiny_div2k), "--outdir", str(tmp_path), "--epochs", "100",
                             "--steps-per-epoch", "3", *TINY], cwd=repo_root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not list(tmp_path.glob("*/state.json")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "--resume" in stderr
    (state_file,) = tmp_path.glob("*/state.json")
    state = json.loads(state_file.read_text())
    assert state["checkpoint"].endswith("-interrupted.keras")
    assert [p.name for p in state_file.parent.glob("resume-*.keras")] == [state["checkpoint"]]
    run_dir = Path(train.main(["--resume", str(state_file.parent), "--epochs", str(state["epoch"] + 1)]))
    assert json.loads((run_dir / "state.json").read_text())["epoch"] == state["epoch"] + 1

"""bench.py and evaluation.py: bicubic baseline against the literature, end-to-end runs, one-line errors."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import bench
import evaluation
import metrics
from utils import UserError

# Published bicubic rows (PSNR-Y / SSIM-Y, shave = scale), e.g. EDSR / RCAN / SwinIR tables.
LITERATURE = {
    ("Set5", 2): (33.66, 0.9299), ("Set5", 3): (30.39, 0.8682), ("Set5", 4): (28.42, 0.8104),
    ("Set14", 2): (30.24, 0.8688), ("Set14", 3): (27.55, 0.7742), ("Set14", 4): (26.00, 0.7027),
    ("B100", 2): (29.56, 0.8431), ("B100", 3): (27.21, 0.7385), ("B100", 4): (25.96, 0.6675),
}


def test_bicubic_reproduces_literature(shared_dir, tmp_path, capsys):
    sets = [str(shared_dir / "datasets" / name) for name in ("Set5", "Set14", "B100")]
    argv = ["--bicubic", "--scale", "2", "3", "4", "-o", str(tmp_path / "bench.json"), "--no-progress"]
    for d in sets:
        argv += ["--dataset", d]
    assert bench.main(argv) == 0
    rows = json.loads((tmp_path / "bench.results.json").read_text())["rows"]
    assert len(rows) == 9
    for row in rows:
        psnr, ssim = LITERATURE[(row["dataset"], row["scale"])]
        assert row["shave"] == row["scale"]
        assert abs(row["psnr_y"] - psnr) <= 0.02, row
        assert abs(row["ssim_y"] - ssim) <= 0.0015, row
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("Best PSNR = 33.67") and out[-1].endswith("for model bicubic")
    assert any(line.startswith("| Bicubic | 33.67 / 0.930") for line in out)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Two x2 checkpoints named like train.py's, and one x3 model, all tiny EDSRs."""
    import model as model_lib

    root = tmp_path_factory.mktemp("models")
    run = root / "run" / "models"
    run.mkdir(parents=True)
    paths = []
    for epoch in (1, 2):
        m = model_lib.build_model("edsr", 2, num_filters=4, num_res_blocks=1)
        p = run / f"epoch-{epoch:03d}-psnr-20.0000.keras"
        m.save(p)
        paths.append(str(p))
    other = root / "x3"
    other.mkdir()
    model_lib.build_model("edsr", 3, num_filters=4, num_res_blocks=1).save(other / "epoch-001-psnr-20.0000.keras")
    return {"dir": str(run), "paths": paths, "x3_dir": str(other)}


def test_bench_end_to_end(tiny_div2k, tiny_models, tmp_path, capsys):
    out = tmp_path / "out" / "bench.json"
    plot = tmp_path / "out" / "psnr.png"
    code = bench.main(["--dataset", str(tiny_div2k), "-i", tiny_models["dir"], "-o", str(out), "--bicubic",
                       "--plot", str(plot), "--no-progress"])
    assert code == 0
    seed = json.loads(out.read_text())
    assert sorted(seed) == sorted(tiny_models["paths"])  # seed format: {model path: PSNR}
    assert all(isinstance(v, float) for v in seed.values())
    results = json.loads((tmp_path / "out" / "bench.results.json").read_text())
    rows = results["rows"]
    assert [r["model"] for r in rows] == ["bicubic"] + tiny_models["paths"]
    for r in rows:
        assert {"model", "dataset", "scale", "psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb", "shave", "self_ensemble",
                "per_image"} <= set(r)
        assert r["shave"] == 0 and r["scale"] == 2  # DIV2K tree: the seed's convention, no border crop
        assert sorted(r["per_image"]) == ["0801", "0802"]
        assert {"psnr_y", "ssim_y"} <= set(r["per_image"]["0801"])
    for r in rows[1:]:
        assert seed[r["model"]] == pytest.approx(r["psnr_rgb"])  # DIV2K: RGB PSNR as the seed
        assert r["epoch"] in (1, 2)
    assert plot.stat().st_size > 0
    lines = capsys.readouterr().out.strip().splitlines()
    best = max(seed, key=seed.get)
    assert lines[-1] == f"Best PSNR = {seed[best]:.4f} for model {best}"
    assert lines[0].startswith("| Model | tiny_div2k")


def test_bench_benchmark_folder_without_lr(tiny_div2k, tiny_models, tmp_path):
    """A folder with only HR/: LR made with MATLAB bicubic, Y-PSNR with shave = scale; self-ensemble + tiles run."""
    import shutil

    folder = tmp_path / "MySet"
    shutil.copytree(tiny_div2k / "DIV2K_valid_HR", folder / "HR")
    out = tmp_path / "b.json"
    bench.main(["--dataset", str(folder), "-i", tiny_models["paths"][0], "-o", str(out), "--self-ensemble",
                "--tile", "24", "--tile-overlap", "4", "--no-progress"])
    row = json.loads((tmp_path / "b.results.json").read_text())["rows"][0]
    assert row["kind"] == "benchmark" and row["shave"] == 2 and row["self_ensemble"] is True
    assert json.loads(out.read_text())[tiny_models["paths"][0]] == pytest.approx(row["psnr_y"])


def test_evaluate_in_memory_triples(tiny_models):
    """train.py's validation path: (stem, lr, hr) arrays, shave 0, the seed-compatible RGB PSNR."""
    import inference
    import model as model_lib

    m = model_lib.load_model(tiny_models["paths"][0])
    rng = np.random.default_rng(0)
    lr = rng.integers(0, 256, (12, 14, 3), dtype=np.uint8)
    hr = rng.integers(0, 256, (24, 28, 3), dtype=np.uint8)
    row = evaluation.evaluate(m, [("a", lr, hr)], 2, shave=0, progress=False)
    sr = inference.super_resolve(m, lr)
    assert row["psnr_rgb"] == pytest.approx(metrics.psnr(hr, sr, 0, "rgb"))
    assert row["shave"] == 0 and row["num_images"] == 1
    bic = evaluation.evaluate("bicubic", [("a", lr, hr)], 2, progress=False)
    assert bic["model"] == "bicubic" and bic["shave"] == 2


def test_missing_dataset_is_one_line_error(repo_root, tmp_path):
    proc = subprocess.run([sys.executable, "bench.py", "--dataset", str(tmp_path / "nope"), "-i", str(tmp_path)],
                          cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: dataset directory") and "nope" in err[0]


def test_wrong_scale_checkpoint(tiny_div2k, tiny_models, tmp_path):
    with pytest.raises(UserError, match=r"epoch-001-psnr-20.0000.keras is a x3 model"):
        bench.main(["--dataset", str(tiny_div2k), "-i", tiny_models["x3_dir"], "--scale", "2",
                    "-o", str(tmp_path / "b.json"), "--no-progress"])


def test_other_input_errors(tiny_div2k, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no checkpoints"):
        bench.main(["--dataset", str(tiny_div2k), "-i", str(empty), "-o", str(tmp_path / "b.json")])
    with pytest.raises(UserError, match="does not exist"):
        bench.main(["--dataset", str(tiny_div2k), "-i", str(tmp_path / "missing"), "-o", str(tmp_path / "b.json")])
    bad = empty / "epoch-001-psnr-1.0000.keras"
    bad.write_bytes(b"not a model")
    with pytest.raises(UserError, match="epoch-001-psnr-1.0000.keras"):
        bench.main(["--dataset", str(tiny_div2k), "-i", str(empty), "-o", str(tmp_path / "b.json")])
    with pytest.raises(UserError, match="--bicubic"):
        bench.main(["--dataset", str(tiny_div2k), "--bicubic", "-o", str(tmp_path / "b.json")])
    assert not (tmp_path / "b.json").exists()


def test_markdown_table_layout():
    rows = [
        {"label": "Bicubic", "dataset": "Set5", "scale": 2, "kind": "benchmark", "psnr_y": 33.66, "ssim_y": 0.9299},
        {"label": "m.keras", "dataset": "Set5", "scale": 2, "kind": "benchmark", "psnr_y": 37.0, "ssim_y": 0.95},
        {"label": "m.keras", "dataset": "DIV2K", "scale": 2, "kind": "div2k", "psnr_rgb": 34.5, "ssim_rgb": 0.93},
    ]
    table = bench.markdown_table(rows).splitlines()
    assert table[0] == "| Model | Set5 x2 (Y) | DIV2K x2 (RGB) |"
    assert table[2] == "| Bicubic | 33.66 / 0.9299 | - |"
    assert re.fullmatch(r"\| m\.keras \| 37\.00 / 0\.9500 \| 34\.50 / 0\.9300 \|", table[3])
    assert bench.epoch_of(os.path.join("x", "epoch-012-psnr-30.1000.keras")) == 12


def test_evaluate_logvar_model_adds_uncertainty():
    import model as model_lib

    m = model_lib.build_model("edsr", 2, num_filters=4, num_res_blocks=1, pred_logvar=True)
    rng = np.random.default_rng(1)
    triples = [(f"i{k}", rng.integers(0, 256, (12, 12, 3), dtype=np.uint8),
                rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)) for k in range(2)]
    row = evaluation.evaluate(m, triples, 2, shave=0, progress=False)
    assert {"nll", "ause_rmse", "spearman", "calibration_error"} <= set(row["uncertainty"])
    assert row["uncertainty_pooling"] == "pixels of all images"
    assert "uncertainty" in row["per_image"]["i0"]


def test_gram_loss_mode_comes_from_the_checkpoint(tmp_path):
    """bench reads the log-variance convention through losses.checkpoint_loss_mode; --loss-mode overrides it."""
    (tmp_path / "models").mkdir()
    ckpt = tmp_path / "models" / "epoch-001-psnr-30.0000.keras"
    ckpt.write_bytes(b"")
    assert bench.loss_mode_for(None, str(ckpt)) == "l2"  # nothing says: Gaussian
    (tmp_path / "args.json").write_text(json.dumps({"pred_logvar": True, "loss_mode": "l1"}))
    assert bench.loss_mode_for(None, str(ckpt)) == "l1"
    assert bench.loss_mode_for(None, str(ckpt), override="l2") == "l2"
    (tmp_path / "args.json").write_text(json.dumps({"pred_logvar": False, "loss_mode": "l1"}))
    assert bench.loss_mode_for(None, str(ckpt)) == "l2"

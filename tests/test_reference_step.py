"""The project's Real-ESRGAN / Real-ESRNet training step against the reference code (realesrgan 0.3.0 /
basicsr 1.4.2 `RealESRGANModel.optimize_parameters` / `RealESRNetModel`), through testing/reference_step.py
with reduced nets: same G, UNet-SN D, VGG19 and paired batches (train.py's loader on a one-image dataset), 3
steps. Skipped without the reference packages (requirements-reference.txt)."""
import pytest

from testing.reference import require_reference


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    require_reference("realesrgan.models.realesrgan_model")
    from testing import reference_step

    # the GAN recipe also through train.py on the command line (the run a user makes)
    return reference_step.run(small=True, lr_size=16, steps=3, cli=("realesrgan",), threads=1,
                              workdir=str(tmp_path_factory.mktemp("reference_step")))


@pytest.mark.parametrize("recipe", ["realesrgan", "realesrnet"])
def test_losses_and_updates_match_the_reference(report, recipe):
    rep = report[recipe]
    terms = {r["term"] for r in rep["losses"]}
    assert terms == ({"l1", "perceptual", "gan", "d_loss_real", "d_loss_fake"} if recipe == "realesrgan" else {"l1"})
    assert len(rep["losses"]) == 3 * len(terms)
    # every step's losses within 1e-3, each network's update on held-out probes: cosine >= 0.999, norm within 2 %
    assert rep["failures"] == [], rep["failures"]
    for when in ("after_1", "after_3"):
        for net, v in rep["updates"][when].items():
            assert v["cos"] >= 0.999 and abs(v["norm_ratio"] - 1) <= 0.02, (when, net, v)
    # weight updates w3 - w0, matched tensor by tensor (Adam's first steps are sign-like: near-zero gradients may
    # flip a few signs, so the whole-network cosine is lower than the per-tensor median)
    for net, w in rep["weights"].items():
        assert w["matched"].split("/")[0] == w["matched"].split("/")[1], w
        assert w["median_tensor_cos"] > 0.99 and w["sign_agreement"] > 0.98, (net, w)


def test_command_line_run_matches_the_reference(report):
    """train.py -p realesrgan-x4 --pretrained-model/--pretrained-discriminator/--vgg-weights, batch 1, --no-ema,
    3 steps: G's and D's checkpoints after steps 1 and 3 moved as the reference's networks on the probes."""
    cli = report["realesrgan"]["cli_updates"]
    assert set(cli) == {"after_1", "after_3"}
    for when, nets in cli.items():
        assert set(nets) == {"generator", "discriminator"}
        for net, v in nets.items():
            assert v["cos"] >= 0.999 and abs(v["norm_ratio"] - 1) <= 0.02, (when, net, v)

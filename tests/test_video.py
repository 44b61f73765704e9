"""demo.py on a video: frames, timing, colour range and the audio stream kept; the file appears only when complete."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import demo
from conftest import ROOT, smooth_image
from evaluation import upscale, video

av = pytest.importorskip("av")

W, H, FPS, FRAMES, RATE = 32, 24, 10, 10, 16000


def make_clip(path, frames=FRAMES, fps=FPS, audio=True, width=W, height=H):
    """A synthetic clip made with PyAV: smooth moving frames (libx264), and a 440 Hz sine in AAC."""
    from fractions import Fraction

    rng = np.random.default_rng(0)
    base = smooth_image(rng, 2 * height, 2 * width)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.codec_context.color_range = 2  # full (JPEG) range: the output must say so too
        vs.codec_context.options = {"crf": "10"}
        if audio:
            aus = out.add_stream("aac", rate=RATE, layout="mono")
        for i in range(frames):
            img = np.ascontiguousarray(base[i % height : i % height + height, i % width : i % width + width])
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p", dst_color_range=2)
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        if audio:
            t = np.arange(int(RATE * frames / fps)) / RATE
            samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            for start in range(0, samples.shape[1], 1024):
                chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start : start + 1024]),
                                                   format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = RATE, start
                out.mux(aus.encode(chunk))
            out.mux(aus.encode(None))
    return path


def describe(path):
    """Video frames (decoded RGB), frame rate, duration (s), colour range; audio codec and packet sizes."""
    with av.open(str(path)) as src:
        vs = src.streams.video[0]
        frames = [f.to_ndarray(format="rgb24", src_color_range=f.color_range or None) for f in src.decode(vs)]
        rate, rng = float(vs.average_rate), vs.codec_context.color_range
        duration = float(vs.duration * vs.time_base) if vs.duration else float(src.duration / 1e6)
    audio = None
    with av.open(str(path)) as src:
        if src.streams.audio:
            a = src.streams.audio[0]
            audio = (a.codec_context.name, [bytes(p) for p in src.demux(a) if p.size])
    return frames, rate, duration, rng, audio


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    import model as model_lib

    from model.bicubic_init import init_bicubic

    # starts as bicubic upscaling: a natural image out (a random network's noise is no test of a video encoder)
    net = model_lib.build_model("wdsr-a", 2, num_filters=8, num_res_blocks=1)
    init_bicubic(net)
    path = tmp_path_factory.mktemp("video_model") / "wdsr.keras"
    net.save(path)
    return str(path)


def test_video_keeps_frames_timing_and_audio(tiny_model, tmp_path):
    clip = make_clip(tmp_path / "clip.mp4")
    out = tmp_path / "out" / "clip_x2.mp4"
    assert demo.main(["-i", str(clip), "-o", str(out), "--model", tiny_model]) == 0
    assert not [n for n in os.listdir(out.parent) if n != out.name]  # no temporary file left
    src_frames, src_rate, src_dur, src_range, src_audio = describe(clip)
    frames, rate, dur, rng, audio = describe(out)
    assert len(frames) == len(src_frames) == FRAMES
    assert rate == pytest.approx(src_rate) and abs(dur - src_dur) <= 1 / src_rate
    assert rng == src_range == 2
    assert audio[0] == src_audio[0] == "aac" and len(audio[1]) == len(src_audio[1])
    assert audio[1] == src_audio[1]  # packets copied byte for byte
    # each frame equals demo's image path on the decoded source frame, within the encoder's loss: PSNR-Y, since
    # the 4:2:0 chroma of the source's pixel format alone holds RGB to about 38 dB even at --crf 0 (this clip)
    import metrics

    up = upscale.Upscaler(upscale.load_sr_model(tiny_model), 2)
    for src, got in zip(src_frames, frames):
        ref = up(src)[0]
        assert got.shape == ref.shape == (2 * H, 2 * W, 3)
        assert metrics.psnr(ref, got, shave=0, channel="y") > 40


def test_outscale_and_no_audio(tiny_model, tmp_path):
    clip = make_clip(tmp_path / "a.mkv", frames=3, audio=False)
    out = tmp_path / "o"
    assert demo.main(["-i", str(clip), "-o", str(out), "--model", tiny_model, "--outscale", "1.5", "--crf", "0"]) == 0
    frames, _, _, _, audio = describe(out / "a.mkv")
    assert len(frames) == 3 and frames[0].shape == (36, 48, 3) and audio is None


def test_decoder_error_keeps_a_playable_partial(tiny_model, tmp_path, monkeypatch, capsys):
    clip = make_clip(tmp_path / "clip.mp4")
    real = video._packets

    def broken(src, vs):
        frames = 0
        for packet, decoded in real(src, vs):
            if decoded is not None:
                frames += len(decoded)
                if frames > 4:
                    yield None, av.error.InvalidDataError(1094995529, "Invalid data found when processing input")
                    return
            yield packet, decoded

    monkeypatch.setattr(video, "_packets", broken)
    out = tmp_path / "out" / "sr.mp4"
    from utils import run_cli

    with pytest.raises(SystemExit) as exc:
        run_cli(demo.main, ["-i", str(clip), "-o", str(out), "--model", tiny_model])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert exc.value.code == 2 and len(lines) == 1 and "sr.partial.mp4" in lines[0], err
    assert not out.exists()
    frames, _, _, _, audio = describe(out.parent / "sr.partial.mp4")
    assert 1 <= len(frames) <= 4 and audio[0] == "aac"


def test_killed_run_leaves_no_final_file_and_skip_existing_finishes(tiny_model, tmp_path):
    clip = make_clip(tmp_path / "long.mp4", frames=200, audio=False, width=96, height=64)
    out_dir = tmp_path / "out"
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, str(ROOT / "demo.py"), "-i", str(clip), "-o", str(out_dir), "--model", tiny_model]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:  # kill while the video is being written
        if out_dir.exists() and list(out_dir.glob(".long.*.tmp.mp4")):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed; make the clip longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out_dir / "long.mp4").exists()
    assert demo.main(["-i", str(clip), "-o", str(out_dir), "--model", tiny_model, "--skip-existing"]) == 0
    assert len(describe(out_dir / "long.mp4")[0]) == 200
    assert demo.main(["-i", str(clip), "-o", str(out_dir), "--model", tiny_model, "--skip-existing"]) == 0

"""Video through demo's image path, frame by frame with PyAV: decode, super-resolve, encode; audio remuxed as is.

Memory stays flat: one decoded frame at a time (plus the encoder's own look-ahead). Timestamps, frame rate and
colour range/space/primaries/transfer of the source are kept; every audio stream is copied packet by packet.
The file is written under a temporary name (`.<stem>.<random>.tmp<ext>`, as utils.atomic_path names them,
so imaging.files.remove_stale_temps cleans up after a killed run) and renamed when complete. A decoder error
keeps the frames done so far as a playable `<stem>.partial<ext>` and ends the run with one line.
"""
import contextlib
import os
import tempfile

import numpy as np

from utils import UserError

DEFAULT_CODEC = {".webm": "libvpx-vp9"}  # every other container: libx264
DEFAULT_CRF = 18


def _open(path):
    import av

    try:
        return av.open(path)
    except (av.FFmpegError, OSError) as e:
        raise UserError(f"cannot read video {path} ({e}); the file is corrupt or not a video") from None


def probe(path):
    """(frames (0 when the container does not say), frames/s, width, height) of the first video stream."""
    with _open(path) as src:
        if not src.streams.video:
            raise UserError(f"{path} has no video stream")
        vs = src.streams.video[0]
        rate = vs.average_rate or vs.guessed_rate or vs.base_rate
        return vs.frames, float(rate) if rate else 0.0, vs.codec_context.width, vs.codec_context.height


def partial_path(path):
    stem, ext = os.path.splitext(path)
    return f"{stem}.partial{ext}"


def _tmp_path(path):
    directory = os.path.dirname(path) or "."
    stem, ext = os.path.splitext(os.path.basename(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{ext}", dir=directory)
        os.close(fd)
    except OSError as e:
        raise UserError(f"cannot write to {directory}: {e.strerror}; choose a writable output directory") from e
    return tmp


def _video_stream(dst, vs, codec, crf, width, height):
    """The output video stream: source time base and colour tags, `codec` at `crf`, a pixel format it takes."""
    import av

    rate = vs.average_rate or vs.guessed_rate or vs.base_rate
    out = dst.add_stream(codec, rate=rate)
    out.width, out.height = width, height
    out.time_base = vs.time_base
    cc, src = out.codec_context, vs.codec_context
    cc.time_base = vs.time_base
    formats = [f.name for f in (out.codec.video_formats or [])]
    even = width % 2 == 0 and height % 2 == 0
    for pix in ((src.pix_fmt,) if src.pix_fmt else ()) + (("yuv420p",) if even else ()) + ("yuv444p",):
        if not formats or pix in formats:
            cc.pix_fmt = pix
            break
    for attr in ("color_range", "colorspace", "color_primaries", "color_trc"):
        with contextlib.suppress(AttributeError, ValueError, TypeError):
            setattr(cc, attr, getattr(src, attr))
    if crf is not None:
        cc.options = {"crf": str(crf)}
    if codec == "libvpx-vp9":
        cc.options = {**cc.options, "b": "0"}  # constant quality: crf alone is a cap in VP9
    return out


def _packets(src, vs):
    """(packet, decoded frames or None for audio) in file order; a decoder error ends it as (None, error)."""
    import av

    it = src.demux(vs, *src.streams.audio)
    while True:
        try:
            packet = next(it)
            frames = packet.decode() if packet.stream.type == "video" else None
        except StopIteration:
            return
        except av.FFmpegError as e:
            yield None, e
            return
        yield packet, frames


def upscale_video(src_path, dst_path, upscale, codec=None, crf=None, progress=True):
    """Super-resolve `src_path` into `dst_path` with `upscale` (uint8 HxWx3 RGB -> uint8 RGB). Returns frames."""
    import av
    from tqdm import tqdm

    ext = os.path.splitext(dst_path)[1].lower()
    codec = codec or DEFAULT_CODEC.get(ext, "libx264")
    crf = DEFAULT_CRF if crf is None else crf
    frames_total, _, _, _ = probe(src_path)
    tmp = _tmp_path(dst_path)
    done, error, bar = 0, None, None
    try:
        with _open(src_path) as src, av.open(tmp, "w", format=None) as dst:
            vs = src.streams.video[0]
            vs.thread_type = "AUTO"
            audio = {a.index: dst.add_stream_from_template(a) for a in src.streams.audio}
            out, pending = None, []  # audio packets wait for the video stream (the header needs every stream)
            bar = tqdm(total=frames_total or None, unit="frame", desc=os.path.basename(src_path), disable=not progress)
            for packet, frames in _packets(src, vs):
                if packet is None:
                    error = frames
                    break
                if frames is None:
                    if packet.dts is not None:
                        packet.stream = audio[packet.stream.index]
                        pending.append(packet) if out is None else dst.mux(packet)
                    continue
                for frame in frames:
                    rgb = frame.to_ndarray(format="rgb24", src_color_range=frame.color_range or None)
                    sr = np.ascontiguousarray(upscale(rgb))
                    if out is None:
                        out = _video_stream(dst, vs, codec, crf, sr.shape[1], sr.shape[0])
                    new = av.VideoFrame.from_ndarray(sr, format="rgb24").reformat(
                        format=out.codec_context.pix_fmt, dst_colorspace=frame.colorspace or None,
                        dst_color_range=frame.color_range or None)
                    new.pts, new.time_base = frame.pts, frame.time_base
                    try:
                        encoded = out.encode(new)
                    except av.FFmpegError as e:
                        raise UserError(f"cannot encode {sr.shape[1]}x{sr.shape[0]} frames with --codec {codec} "
                                        f"({e}); try --codec libx264") from None
                    dst.mux(encoded)
                    for p in pending:
                        dst.mux(p)
                    pending = []
                    done += 1
                    bar.update(1)
            if out is not None:
                dst.mux(out.encode(None))
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    finally:
        if bar is not None:
            bar.close()
    if error is None and done:
        os.replace(tmp, dst_path)
        return done
    if not done:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise UserError(f"cannot decode {src_path} ({error or 'no video frames'}); nothing written")
    partial = partial_path(dst_path)
    os.replace(tmp, partial)
    raise UserError(f"decoder error in {src_path} after {done} frame(s) ({error}); the frames done are in {partial}")

"""A copy of a written video that browsers play: H.264 (yuv420p) in MP4, with the sound of the source.

test.py's videos are MPEG-4 Part 2 (OpenCV's mp4v) without sound, which no browser plays; PyAV (FFmpeg's
libraries, in its wheels: no system ffmpeg) re-encodes the pictures with libx264 and the source's first
audio stream as AAC. yuv420p needs even sides: an odd last row or column is cut.
"""
from fractions import Fraction

import av

# x264 quality (lower is better; 23 is its default) and speed preset of the copy.
CRF = "20"
PRESET = "veryfast"


def _open_sound(path):
    """(container, its first audio stream) of the file at `path`, or (None, None) when it has no sound or
    FFmpeg cannot open it (the copy is then silent)."""
    if path is None:
        return None, None
    try:
        container = av.open(str(path))
    except av.error.FFmpegError:
        return None, None
    if not container.streams.audio:
        container.close()
        return None, None
    return container, container.streams.audio[0]


def browser_mp4(video, sound, out, report=None):
    """Write `out`: the frames of `video` as H.264 at its frame rate, with the first audio stream of the
    file `sound` (None: none) as AAC, cut at the video's end. `report(done, total)` follows the frames.
    Returns (frames written, whether sound was added)."""
    sound_file, ain = _open_sound(sound)
    try:
        with av.open(str(video)) as src, av.open(str(out), "w", format="mp4") as dst:
            vin = src.streams.video[0]
            rate = Fraction(vin.average_rate or vin.guessed_rate or 25).limit_denominator(1001 * 1000)
            vout = dst.add_stream("libx264", rate=rate, options={"crf": CRF, "preset": PRESET})
            vout.width, vout.height = vin.codec_context.width // 2 * 2, vin.codec_context.height // 2 * 2
            vout.pix_fmt = "yuv420p"
            vout.codec_context.time_base = 1 / rate
            aout = (dst.add_stream("aac", rate=ain.codec_context.sample_rate, layout=ain.codec_context.layout)
                    if ain is not None else None)
            frames = 0
            for frame in src.decode(vin):
                picture = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24")[:vout.height, :vout.width],
                                                     format="rgb24")
                picture.pts, picture.time_base = frames, vout.codec_context.time_base
                dst.mux(vout.encode(picture))
                frames += 1
                if report is not None:
                    report(frames, vin.frames)
            dst.mux(vout.encode())
            if aout is not None:
                for chunk in sound_file.decode(ain):
                    if chunk.time is not None and chunk.time >= frames / rate:
                        break
                    chunk.pts = None
                    dst.mux(aout.encode(chunk))
                dst.mux(aout.encode())
    finally:
        if sound_file is not None:
            sound_file.close()
    return frames, aout is not None

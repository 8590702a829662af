"""Short videos written with PyAV for the web app's tests: noise frames, and a tone as AAC sound."""
import av
import numpy as np

SAMPLE_RATE = 16000


def write_video(path, frames=12, size=(65, 97), fps=10, sound=True, seed=0, picture=None):
    """Write an H.264 video of `frames` noise frames of (height, width) `size` at `fps` (or of the RGB
    `picture` panning across), with a 440 Hz tone lasting as long when `sound`; returns `path`."""
    height, width = size
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)  # 4:4:4 keeps odd sides
        video.width, video.height, video.pix_fmt = width, height, "yuv444p"
        audio = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono") if sound else None
        for index in range(frames):
            pixels = (rng.integers(0, 256, (height, width, 3), dtype=np.uint8) if picture is None else
                      np.ascontiguousarray(picture[:height, index:index + width]))
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if audio is not None:
            t = np.arange(SAMPLE_RATE * frames // fps) / SAMPLE_RATE
            tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            for start in range(0, tone.shape[1], 1024):
                chunk = av.AudioFrame.from_ndarray(tone[:, start:start + 1024], format="flt", layout="mono")
                chunk.sample_rate, chunk.pts = SAMPLE_RATE, start
                container.mux(audio.encode(chunk))
            container.mux(audio.encode())
    return path


def video_streams(path):
    """(frames decoded, (height, width), codec name, whether it has an audio stream) of the video at `path`."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return frames, (stream.codec_context.height, stream.codec_context.width), stream.codec_context.name, \
            bool(container.streams.audio)

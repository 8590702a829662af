"""What the web app accepts and keeps: the limits users can rely on (app.py's options), with their defaults."""
from dataclasses import dataclass

from ..image_io import DEFAULT_MAX_PIXELS
from ..utils.cli import int_at_least, positive_number, positive_seconds

# Largest file one upload may be (a photo, a zip of photos, a video), in megabytes of 10^6 bytes.
DEFAULT_MAX_UPLOAD_MB = 100.0
# Longest video the Video tab processes, in seconds (from the container's frame count and rate).
DEFAULT_MAX_VIDEO_SECONDS = 60.0
# Most images one request detects on (loose files and the images of zips together).
DEFAULT_MAX_IMAGES = 100
# Most requests waiting in the queue; one more is refused with "the queue is full".
DEFAULT_QUEUE_SIZE = 16
# Uploads and results are removed from the server this long after they were made (and all at exit).
KEEP_SECONDS = 3600


@dataclass(frozen=True)
class Limits:
    """The limits of one running app. `max_pixels`: images of more pixels are refused from their header
    (lib.image_io.read_image)."""
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    max_video_seconds: float = DEFAULT_MAX_VIDEO_SECONDS
    max_images: int = DEFAULT_MAX_IMAGES
    queue_size: int = DEFAULT_QUEUE_SIZE
    max_pixels: int = DEFAULT_MAX_PIXELS
    keep_seconds: int = KEEP_SECONDS

    @property
    def max_upload_bytes(self):
        return int(self.max_upload_mb * 1e6)

    def describe(self):
        """The limits in one sentence for the page."""
        pixels = f"{self.max_pixels / 1e6:.0f} megapixels" if self.max_pixels else "no pixel limit"
        return (f"Files up to {self.max_upload_mb:g} MB each (a zip's images unpacked too), at most "
                f"{self.max_images} images per request, {pixels} per image, videos up to "
                f"{self.max_video_seconds:g} s; at most {self.queue_size} requests wait in the queue. "
                f"Uploads and results are deleted from the server after {self.keep_seconds // 60} minutes "
                f"and when it stops.")


def add_limit_args(parser):
    """Add the options of `Limits` to an argparse parser (read back by `limits_from_args`)."""
    group = parser.add_argument_group("limits")
    group.add_argument("--max-upload-mb", type=positive_number("a number of megabytes"),
                       default=DEFAULT_MAX_UPLOAD_MB, metavar="MB",
                       help=f"largest file one upload may be, and what a zip's images may unpack to "
                            f"(default {DEFAULT_MAX_UPLOAD_MB:g})")
    group.add_argument("--max-video-seconds", type=positive_seconds,
                       default=DEFAULT_MAX_VIDEO_SECONDS, metavar="S",
                       help=f"longest video the Video tab takes (default {DEFAULT_MAX_VIDEO_SECONDS:g})")
    group.add_argument("--max-images", type=int_at_least(1), default=DEFAULT_MAX_IMAGES,
                       metavar="N", help=f"most images one request detects on (default {DEFAULT_MAX_IMAGES})")
    group.add_argument("--queue-size", type=int_at_least(1), default=DEFAULT_QUEUE_SIZE,
                       metavar="N", help=f"most requests waiting; more are refused (default {DEFAULT_QUEUE_SIZE})")
    group.add_argument("--max-pixels", type=int_at_least(0), default=DEFAULT_MAX_PIXELS,
                       metavar="N", help=f"refuse images of more than N pixels, from their header (default "
                                         f"{DEFAULT_MAX_PIXELS:,}; 0: no limit)")


def limits_from_args(args):
    """The Limits the options of `add_limit_args` describe."""
    return Limits(args.max_upload_mb, args.max_video_seconds, args.max_images, args.queue_size, args.max_pixels)

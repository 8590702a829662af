"""The Gradio page: a Photos tab and a Video tab on one detector, their API endpoints (/photos, /video)
and the bounded queue. The handlers only translate between the page and lib.webapp.photos / videos;
a refused or undecodable upload becomes a message on the page (gr.Error when nothing could be done,
gr.Warning beside results otherwise) and the server goes on serving.

No webcam tab: Gradio streams webcam frames to the server one by one, and at the model's test scale a
frame takes seconds on a CPU (README, "Web app"), too slow for a live view; recorded clips go through the
Video tab.
"""
from pathlib import Path

import gradio as gr

from ..anonymize import DEFAULT_HOLD, DEFAULT_SCALE, DEFAULT_SHAPE, METHODS, SHAPES
from ..sources import IMAGE_SUFFIXES
from .photos import TABLE_HEADERS, PhotoOptions, detect_photos, plain
from .uploads import ZIP_SUFFIX, photo_inputs, video_input
from .videos import VideoOptions, anonymize_video

NONE = "none"
# Events sharing this id run one at a time: one detector, whose network uses every core.
DETECTOR = "detector"
# Page fonts are the system's, so the page loads nothing from other sites.
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]
MONO_FONTS = ["ui-monospace", "monospace"]
PHOTOS_NOTE = ("Boxes are x1, y1, x2, y2 in the photo's pixels, corners included. Downloads: the anonymised "
               "photos (a zip for several), `detections.json` (test.py's `--save-json` file) and the face crops "
               "(a zip). Several photos at once: select them together, or upload a .zip.")
VIDEO_NOTE = ("Downloads: the video and its detections (JSON, the frames detected on). The video is H.264, which "
              "browsers play, with the source's sound (AAC). Detection runs on every Nth frame, the frames "
              "between reuse its boxes; a face stays masked for the held frames after it was last detected.")
WEBCAM_NOTE = ("There is no webcam tab: detection takes seconds per frame on a CPU at the model's test "
               "scale, too slow for a live view. Record a clip and use the Video tab, or run "
               "`python3 test.py --video 0 --anonymize blur --show` on a machine with a GPU.")


def theme():
    """Gradio's default theme with system fonts (the default fetches its fonts from Google)."""
    return gr.themes.Default(font=SYSTEM_FONTS, font_mono=MONO_FONTS)


def _method(name):
    return None if name in (None, NONE) else name


def _thresh(value):
    """The slider's threshold without the binary noise of its steps (0.30000000000000004)."""
    return round(float(value), 6)


def _warn(problems):
    for message in problems:
        gr.Warning(message)
    return "".join(f"\n- {message}" for message in problems)


def _pictures(pairs):
    return [(str(path), caption) for path, caption in pairs]


def _message(text):
    """A message that stays on the page until closed."""
    return gr.Error(text, duration=None, print_exception=False)


def _refuse(error, inputs):
    """The message of an upload refused: `error`'s, without the server's input folder `inputs`."""
    return _message(plain(str(error.args[0] if error.args else error), inputs))


def build_page(detector, model, precision, workspace, limits):
    """The page (gr.Blocks, queue set) for `detector`; `model` and `precision` name it in JSON headers as
    test.py does; requests live in `workspace` (lib.webapp.workspace); `limits` (lib.webapp.limits)."""

    def photos(files, thresh=0.5, anonymize=NONE, mask_shape=DEFAULT_SHAPE, mask_scale=DEFAULT_SCALE,
               crops=False, crop_margin=0.0, progress=gr.Progress()):
        """Detect faces in photos (or the photos of zips); anonymise them with blur, pixelate or solid."""
        if not files:
            raise _message("Choose one or more photos (or a .zip of photos) first.")
        options = PhotoOptions(_thresh(thresh), _method(anonymize), mask_shape, float(mask_scale), bool(crops),
                               float(crop_margin))
        with workspace.request() as folder:
            inputs, problems = photo_inputs(files, folder / "in", limits)
            if not inputs:
                raise _message("\n".join(problems))
            try:
                results = detect_photos(detector, inputs, folder, options, model, precision, limits.max_pixels,
                                        lambda done, total: progress((done, total), desc="photos", unit="photos"))
            except ValueError as e:  # a setting detection refuses
                raise _refuse(e, folder / "in") from None
        problems += results.problems
        if not results.images:
            raise _message("\n".join(problems))
        summary = results.summary(options.thresh) + _warn(problems)
        return (_pictures(results.drawn), _pictures(results.anonymized), summary, results.rows,
                [str(p) for p in results.downloads])

    def video(video, thresh=0.5, anonymize="blur", mask_shape=DEFAULT_SHAPE, mask_scale=DEFAULT_SCALE,
              hold=DEFAULT_HOLD, every=1, progress=gr.Progress(track_tqdm=True)):
        """Anonymise (or draw the faces of) a video; the result is H.264 with the source's sound."""
        if not video:
            raise _message("Choose a video first.")
        options = VideoOptions(_thresh(thresh), _method(anonymize), mask_shape, float(mask_scale), int(hold),
                               int(every))
        with workspace.request() as folder:
            try:
                source = video_input(video, folder / "in", limits)
                results = anonymize_video(detector, source, folder, options, model, precision,
                                          limits.max_video_seconds, limits.max_pixels,
                                          lambda done, total, what: progress((done, total), desc=what,
                                                                             unit="frames"))
            except ValueError as e:  # UploadError, VideoError, ImageError among them
                raise _refuse(e, folder / "in") from None
        return (str(results.video), results.summary() + _warn(results.problems),
                [str(p) for p in results.downloads])

    with gr.Blocks(title="SSH face detector", analytics_enabled=False,
                   delete_cache=(max(60, limits.keep_seconds // 6), limits.keep_seconds)) as page:
        gr.Markdown(f"## SSH face detector\nModel `{Path(model).name}`, {precision}. {limits.describe()}")
        with gr.Tab("Photos", id="photos"):
            with gr.Row():
                with gr.Column(scale=1):
                    files = gr.File(label="Photos, or a .zip of photos", file_count="multiple",
                                    file_types=sorted(IMAGE_SUFFIXES) + [ZIP_SUFFIX], elem_id="photo-files")
                    thresh = gr.Slider(0, 1, value=0.5, step=0.01, label="Score threshold")
                    method = gr.Radio([NONE, *METHODS], value=NONE, label="Anonymise", elem_id="photo-method")
                    shape = gr.Radio(list(SHAPES), value=DEFAULT_SHAPE, label="Mask shape")
                    scale = gr.Slider(1, 3, value=DEFAULT_SCALE, step=0.05, label="Mask scale (of the box)")
                    crops = gr.Checkbox(label="Save face crops", elem_id="photo-crops")
                    margin = gr.Slider(0, 1, value=0, step=0.05, label="Crop margin (of the box)")
                    run_photos = gr.Button("Detect faces", variant="primary", elem_id="detect-photos")
                with gr.Column(scale=2):
                    summary = gr.Markdown(label="Summary", elem_id="photo-summary")
                    drawn = gr.Gallery(label="Faces found", columns=3, height="auto", elem_id="photo-results")
                    anonymized = gr.Gallery(label="Anonymised", columns=3, height="auto", visible=False)
                    table = gr.Dataframe(headers=TABLE_HEADERS, label="Boxes", interactive=False,
                                         elem_id="photo-table")
                    downloads = gr.File(label="Downloads", file_count="multiple", interactive=False,
                                        elem_id="photo-downloads")
                    gr.Markdown(PHOTOS_NOTE)
        with gr.Tab("Video", id="video"):
            with gr.Row():
                with gr.Column(scale=1):
                    clip = gr.Video(label="Video", sources=["upload"], elem_id="video-input")
                    v_thresh = gr.Slider(0, 1, value=0.5, step=0.01, label="Score threshold")
                    v_method = gr.Radio([NONE, *METHODS], value="blur", label="Anonymise (none: draw the boxes)")
                    v_shape = gr.Radio(list(SHAPES), value=DEFAULT_SHAPE, label="Mask shape")
                    v_scale = gr.Slider(1, 3, value=DEFAULT_SCALE, step=0.05, label="Mask scale (of the box)")
                    hold = gr.Slider(0, 30, value=DEFAULT_HOLD, step=1, label="Hold masks for frames")
                    every = gr.Slider(1, 30, value=1, step=1, label="Detect on every Nth frame")
                    run_video = gr.Button("Process video", variant="primary", elem_id="process-video")
                with gr.Column(scale=2):
                    v_summary = gr.Markdown(label="Summary", elem_id="video-summary")
                    result = gr.Video(label="Result", interactive=False, elem_id="video-result")
                    v_downloads = gr.File(label="Downloads", file_count="multiple", interactive=False,
                                          elem_id="video-downloads")
                    gr.Markdown(VIDEO_NOTE)
        gr.Markdown(WEBCAM_NOTE)
        method.change(lambda name: gr.Gallery(visible=name != NONE), method, anonymized, api_visibility="private")
        run_photos.click(photos, [files, thresh, method, shape, scale, crops, margin],
                         [drawn, anonymized, summary, table, downloads], api_name="photos",
                         concurrency_id=DETECTOR, concurrency_limit=1)
        run_video.click(video, [clip, v_thresh, v_method, v_shape, v_scale, hold, every],
                        [result, v_summary, v_downloads], api_name="video", concurrency_id=DETECTOR,
                        concurrency_limit=1)
    page.queue(max_size=limits.queue_size, default_concurrency_limit=1)
    return page

"""TensorBoard's scalars page on the event files of a real train.py run (lib/training/tensorboard.py), as
a user sees it in headless Chromium (Selenium): the run is listed and every scalar tag we log is a card
with its curve drawn through the points logged.

One short run per module (tiny WIDER data with a val split, so the detection pictures are logged too),
one `python -m tensorboard.main` on its output folder. Without Chromium and chromedriver (`make browser`)
the tests skip, and fail under CI, as tests/scripts/test_app.py does; without tensorboard they skip.
SSH_TB_SCREENSHOT=FILE saves the page with the loss curves there as a PNG (`make screenshots`:
docs/images/tensorboard_scalars.png).
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from PIL import Image
from browser import browser_binaries, free_port
from wider_fixtures import add_val_split, tiny_wider

pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install -r requirements.txt)")
pytest.importorskip("selenium", reason="selenium is not installed (pip install -r requirements.txt)")

from tb_events import scalars  # noqa: E402 (needs tensorboard)

ROOT = Path(__file__).resolve().parents[2]
ITERS = 40  # SGD steps
SNAPSHOT = 20  # TRAIN.SNAPSHOT: detection pictures (and snapshots) at steps 20 and 40
VAL_EVERY = 10  # --val-every: validation APs at steps 10, 20, 30 and 40
# {tag: points of its curve} of every scalar train.py logs, as TensorBoard names it; a tag train.py starts
# logging goes here. Cards are checked one group (the part before "/") at a time.
EXPECTED_TAGS = dict.fromkeys((
    "loss/total", "loss/m1_cls", "loss/m1_reg", "loss/m2_cls", "loss/m2_reg", "loss/m3_cls", "loss/m3_reg",
    "lr", "grad_norm",
    "time/images_per_s", "time/step_s", "time/data_wait_s",
), ITERS) | dict.fromkeys(("val/ap_easy", "val/ap_medium", "val/ap_hard", "time/val_s"), ITERS // VAL_EVERY)
# The cards of the screenshot: the losses that move (M2 and M3 see no face at 64 pixels: no regression loss)
# and the lr step.
SCREENSHOT_TAGS = ("loss/m1_cls", "loss/m1_reg", "loss/m2_cls", "loss/m3_cls", "loss/total", "lr")
RUN = "tb"  # TensorBoard names a run by its folder under --logdir: train.py writes <out>/tb
WAIT = 60  # seconds the page may take for anything (a loaded CI machine)

# The tf-scalar-card elements of the category titled `arguments[0]` (the search results of a tag filter
# are titled by its regex), found through the shadow roots of TensorBoard's Polymer elements.
CATEGORY_CARDS = """
function all(root, css, out) {
  out.push(...root.querySelectorAll(css));
  for (const e of root.querySelectorAll('*')) if (e.shadowRoot) all(e.shadowRoot, css, out);
  return out;
}
const view = all(document, 'tf-category-paginated-view', []).find(v => v.category && v.category.name === arguments[0]);
return view ? [...view.querySelectorAll('tf-scalar-card')] : [];
"""
# Vertices of each curve drawn in the card `arguments[0]` (the smoothed and the raw line of each run).
CURVE_POINTS = """
function all(root, css, out) {
  out.push(...root.querySelectorAll(css));
  for (const e of root.querySelectorAll('*')) if (e.shadowRoot) all(e.shadowRoot, css, out);
  return out;
}
return all(arguments[0].shadowRoot, 'path.line', []).map(p => (p.getAttribute('d') || '').split(/[ML]/).length - 1);
"""


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def tag_groups(tags):
    """{group: [tag]}: the tags by their part before the first "/", in order."""
    groups = {}
    for tag in tags:
        groups.setdefault(tag.split("/")[0], []).append(tag)
    return groups


def exact(tags):
    """The tag-filter regex matching exactly `tags`."""
    return "^(" + "|".join(re.escape(tag) for tag in tags) + ")$"


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium, 1480 x 1000 (three chart cards a row beside the sidebar)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = browser_binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1480,1000",
                "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def training_run(tmp_path_factory):
    """The output folder `<tmp>/output` of a short train.py run (ITERS steps at 64 pixels, lr / 10 after 25
    steps, validation every VAL_EVERY steps) on tiny WIDER data whose val split is a copy of its train split
    (the photos of the detection pictures and of the validation)."""
    data = add_val_split(tiny_wider(tmp_path_factory.mktemp("wider"), 3, seed=2, x0=9, dx=7, y0=11))
    out = tmp_path_factory.mktemp("train") / "output"
    small = {"TRAIN.SCALES": "[64]", "TRAIN.MAX_SIZE": "96", "TRAIN.ITER_SIZE": "1", "TRAIN.STEPSIZE": "25",
             "TRAIN.SNAPSHOT": str(SNAPSHOT), "TRAIN.DISPLAY": str(ITERS), "TEST.SCALES": "[64]",
             "TEST.MAX_SIZE": "96"}
    command = [sys.executable, "train.py", "--data", str(data), "--out", str(out), "--init", "none",
               "--device", "cpu", "--workers", "0", "--iters", str(ITERS), "--val-every", str(VAL_EVERY)]
    for key, value in small.items():
        command += ["--set", key, value]
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return out


class Board:
    """`tensorboard --logdir output` run in the folder holding `logdir` (the page shows the logdir as given),
    in its own process group (with its data server); TMPDIR and its log are in `folder`."""

    def __init__(self, logdir, folder):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = open(Path(folder) / "tensorboard.log", "w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", logdir.name, "--port", str(self.port),
             "--host", "127.0.0.1"],
            cwd=logdir.parent, env={**os.environ, "TMPDIR": str(folder)}, stdout=self.log,
            stderr=subprocess.STDOUT, start_new_session=True)

    def wait_until_serving(self, points):
        """Wait until TensorBoard serves `points` ({tag: count}, the event files' scalars) of RUN."""
        deadline = time.monotonic() + WAIT
        missing = dict(points)
        while missing:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.log.seek(0)
                pytest.fail(f"TensorBoard did not serve {sorted(missing)} of run {RUN}:\n{self.log.read()}")
            try:
                for tag, count in list(missing.items()):
                    query = urllib.parse.urlencode({"run": RUN, "tag": tag})
                    if len(get_json(f"{self.url}data/plugin/scalars/scalars?{query}")) == count:
                        del missing[tag]
            except (urllib.error.URLError, ConnectionError, ValueError):  # not up yet, or the run not loaded
                pass
            time.sleep(0.2 if missing else 0)

    def stop(self):
        """SIGTERM to the process group, SIGKILL after 10 s; no process is left."""
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass
        finally:
            self.log.close()


@pytest.fixture(scope="module")
def board(training_run, tmp_path_factory):
    """TensorBoard on the run's output folder, serving every scalar point the event files hold."""
    logged = scalars(training_run / "tb")
    board = Board(training_run, tmp_path_factory.mktemp("tensorboard"))
    try:
        board.wait_until_serving({tag: len(values) for tag, values in logged.items()})
        board.logged = logged
        yield board
    finally:
        board.stop()


def drawn(counts, points):
    """Whether the curves of `counts` vertices (one count per curve of a card: the smoothed one and the faded
    raw one) draw `points` points: one vertex a point but for a few Plottable crops out of view (outliers
    above the y range that "Ignore outliers in chart scaling" leaves out, e.g. the first steps' losses; of a
    curve of 4 points, such as the validation's seconds, the raw one may be left out entirely)."""
    return bool(counts) and max(1, points * 3 // 4) <= max(counts) and max(counts) <= points


def show(driver, board, tags, smoothing=None):
    """The scalars page filtered to exactly `tags`; {tag: [vertices of each curve]} of its result cards once
    every one of `tags` is a card with its curves drawn through their EXPECTED_TAGS points (a test failure
    naming what the page shows otherwise). smoothing: the Smoothing slider's value (None: the default, 0.6)."""
    regex = exact(tags)
    target = f"{board.url}#scalars&tagFilter={urllib.parse.quote(regex, safe='')}"
    if smoothing is not None:
        target += f"&_smoothingWeight={smoothing}"
    if driver.current_url.split("#")[0] == board.url:
        driver.execute_script("location.hash = arguments[0]", target.split("#", 1)[1])
    else:
        driver.get(target)
    from selenium.common.exceptions import StaleElementReferenceException

    want = {tag: EXPECTED_TAGS[tag] for tag in tags}
    shown = {}
    deadline = time.monotonic() + WAIT
    while True:
        try:
            shown = {}
            for card in driver.execute_script(CATEGORY_CARDS, regex):
                lines = card.text.splitlines()  # what the user reads on the card: title, "tag: <tag>", axis ticks
                tag = next((line.removeprefix("tag: ") for line in lines if line.startswith("tag: ")), None)
                shown[tag] = driver.execute_script(CURVE_POINTS, card)
        except StaleElementReferenceException:  # a card re-rendered while being read: read it again
            shown = {}
        if shown.keys() == want.keys() and all(drawn(shown[tag], points) for tag, points in want.items()):
            return shown
        if time.monotonic() > deadline:
            pytest.fail(f"the scalars page filtered by /{regex}/ shows the cards {{tag: [vertices per curve]}} "
                        f"{shown}, not the curves {{tag: points}} {want}")
        time.sleep(0.2)


def test_the_event_files_hold_every_expected_tag(board):
    # Independent of the page: what train.py wrote, read back by tensorboard's EventAccumulator.
    assert set(EXPECTED_TAGS) <= set(board.logged), set(EXPECTED_TAGS) - set(board.logged)
    assert {tag: len(board.logged[tag]) for tag in EXPECTED_TAGS} == EXPECTED_TAGS
    served = get_json(f"{board.url}data/plugin/scalars/tags")
    assert set(EXPECTED_TAGS) <= set(served[RUN])


def test_scalars_page_lists_the_run_and_draws_a_curve_for_every_tag(browser, board):
    from selenium.webdriver.common.by import By

    for group, tags in tag_groups(EXPECTED_TAGS).items():
        show(browser, board, tags)
        page = browser.find_element(By.TAG_NAME, "body").text.splitlines()
        assert exact(tags) in page, group  # the heading of the results: Tags matching /<regex>/
        assert RUN in page  # the run selector
    assert "SCALARS" in page and "IMAGES" in page  # the dashboards of what train.py logged


def test_detection_pictures_reach_tensorboard(board):
    served = get_json(f"{board.url}data/plugin/images/tags")[RUN]
    assert {"detections/0", "detections/1", "detections/2"} <= set(served)


def test_loss_curves_screenshot(browser, board):
    """The loss and lr cards, drawn unsmoothed (the lr step stays a step); when SSH_TB_SCREENSHOT names a
    file, the page down to the end of those cards is saved there as a palette PNG."""
    show(browser, board, SCREENSHOT_TAGS, smoothing=0)
    browser.execute_async_script("requestAnimationFrame(() => requestAnimationFrame(arguments[0]))")
    path = os.environ.get("SSH_TB_SCREENSHOT")
    if not path:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    browser.execute_script("window.scrollTo(0, 0)")
    cards = browser.execute_script(CATEGORY_CARDS, exact(SCREENSHOT_TAGS))
    bottom = max(card.rect["y"] + card.rect["height"] for card in cards) + 20
    browser.save_screenshot(str(path))
    with Image.open(path) as image:
        image = image.crop((0, 0, image.width, min(image.height, round(bottom))))
        small = image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
    assert path.stat().st_size < 200_000

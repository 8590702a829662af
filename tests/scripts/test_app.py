"""app.py in a real browser (headless Chromium driven by Selenium) and through its API (gradio_client).

One server per module (random weights, tiny test scales, --auth, a 1 MB upload limit and 5 s videos), with
its own TMPDIR, HOME and working folder, so the test sees everything it writes. `make setup` installs
Chromium and its driver (Debian's chromium, chromium-driver); without them these tests skip, and fail
under CI. SSH_APP_SCREENSHOTS=FOLDER saves a screenshot of each tab there (`make screenshots`).
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from matplotlib import cbook
from PIL import Image

from browser import browser_binaries, free_port
from test import main as run_test_py
from video_fixtures import video_streams, write_video

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--set", "TEST.SCALES", "[64]", "--set", "TEST.MAX_SIZE", "96"]
USER, PASSWORD = "tester", "pass:word"
MAX_UPLOAD_MB = 1
MAX_VIDEO_SECONDS = 5
WAIT = 60  # seconds the page may take for anything (a loaded CI machine)


class Server:
    """app.py run as a user runs it, its output collected line by line."""

    def __init__(self, checkpoint, folder):
        self.folder = Path(folder)
        self.tmp, self.home, self.cwd = (self.folder / name for name in ("tmp", "home", "cwd"))
        for path in (self.tmp, self.home, self.cwd):
            path.mkdir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.model = str(checkpoint)
        env = dict(os.environ, TMPDIR=str(self.tmp), HOME=str(self.home), PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), "--model", self.model, *SMALL, "--port", str(self.port),
             "--auth", f"{USER}:{PASSWORD}", "--max-upload-mb", str(MAX_UPLOAD_MB),
             "--max-video-seconds", str(MAX_VIDEO_SECONDS)],
            cwd=self.cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True).start()
        deadline = time.monotonic() + 120
        while not any("Running on local URL" in line for line in self.lines):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("app.py did not start:\n" + "".join(self.lines))
            time.sleep(0.1)
        self.workspace = Path(re.search(r"uploads and results: (\S+)", "".join(self.lines)).group(1))

    def stop(self):
        """SIGTERM, as a service manager stops it; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()


@pytest.fixture(scope="module")
def server(random_checkpoint, tmp_path_factory):
    _, pth = random_checkpoint
    server = Server(pth, tmp_path_factory.mktemp("app"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    """Headless Chromium on the page, logged in; downloads go to `browser.downloads`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    chromium, chromedriver = browser_binaries()
    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                "--hide-scrollbars", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.downloads = downloads
    try:
        driver.get(server.url)
        wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "input[type=password]"))
        driver.find_element(By.CSS_SELECTOR, "input[data-testid=textbox]").send_keys(USER)
        driver.find_element(By.CSS_SELECTOR, "input[type=password]").send_keys(PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "button.primary").click()
        wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#photo-files input[type=file]"))
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    from gradio_client import Client

    return Client(server.url, auth=(USER, PASSWORD), verbose=False,
                  download_files=str(tmp_path_factory.mktemp("client")))


def wait_for(driver, condition, timeout=WAIT):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def find(driver, css):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


def open_tab(driver, name):
    from selenium.webdriver.common.by import By

    driver.find_element(By.XPATH, f"//button[@role='tab' and normalize-space()='{name}']").click()


def toasts(driver):
    """The texts of the messages shown in the page's corner, then closed."""
    texts = [t.text for t in find(driver, "[data-testid=toast-text]")]
    for button in find(driver, "[data-testid=toast-close]"):
        button.click()
    return texts


def message_for(driver, text):
    """Wait for a message in the page holding `text`; all its messages."""
    wait_for(driver, lambda d: any(text in t.text for t in find(d, "[data-testid=toast-text]")))
    return toasts(driver)


def download_all(driver, component):
    """Click every download link of the page's `component` (an elem_id); {file name: path} once all arrived."""
    links = find(driver, f"#{component} a[data-testid=download-link]")
    names = [link.get_attribute("download") for link in links]
    for link in links:
        link.click()
    wait_for(driver, lambda d: all((d.downloads / name).is_file() for name in names)
             and not list(d.downloads.glob("*.crdownload")))
    return {name: driver.downloads / name for name in names}


def screenshot(driver, name):
    """Save the page as docs/images/<name>.png under SSH_APP_SCREENSHOTS (palette PNG, well under 200 KB)."""
    folder = os.environ.get("SSH_APP_SCREENSHOTS")
    if not folder:
        return
    path = Path(folder) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(path))
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
    assert path.stat().st_size < 200_000


def photo():
    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def test_page_has_both_tabs_and_loads_nothing_from_other_sites(server, browser):
    assert browser.title == "SSH face detector"
    tabs = [t.text for t in find(browser, "button[role=tab]")]
    assert tabs == ["Photos", "Video"]
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(name.startswith(server.url) for name in loaded), loaded
    assert "no webcam tab" in browser.page_source.lower()


def test_photo_outputs_equal_test_py_run_on_the_same_file(server, browser, tmp_path, monkeypatch):
    """The page's anonymised photo, JSON file and crops are test.py's, byte for byte."""
    open_tab(browser, "Photos")
    find(browser, "#photo-files input[type=file]")[0].send_keys(str(photo()))
    wait_for(browser, lambda d: "grace_hopper" in d.find_element("id", "photo-files").text)
    find(browser, "#photo-method input[value=blur]")[0].click()
    find(browser, "#photo-crops input[type=checkbox]")[0].click()
    find(browser, "#detect-photos")[0].click()
    wait_for(browser, lambda d: len(find(d, "#photo-downloads a[data-testid=download-link]")) == 3)
    assert find(browser, "#photo-results img")
    assert re.fullmatch(r"\d+ faces? \(score ≥ 0.5\) in 1 image", browser.find_element("id", "photo-summary").text)
    screenshot(browser, "app_photos")
    got = download_all(browser, "photo-downloads")
    assert sorted(got) == ["crops.zip", "detections.json", "grace_hopper_anonymized.jpg"]
    link = find(browser, "#photo-downloads a[data-testid=download-link]")[0].get_attribute("href")
    with pytest.raises(urllib.error.HTTPError) as refused:  # --auth: no file without the login's cookie
        urllib.request.urlopen(link, timeout=WAIT)
    assert refused.value.code == 401

    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(photo(), folder)
    monkeypatch.chdir(folder)
    assert run_test_py(["--image", "grace_hopper.jpg", "--model", server.model, *SMALL, "--out", "out", "--save-json",
                    "--save-crops", "--anonymize", "blur", "--draw", "--thresh", "0.5"]) == 0
    out = folder / "out"
    assert got["detections.json"].read_bytes() == (out / "detections.json").read_bytes()
    assert got["grace_hopper_anonymized.jpg"].read_bytes() == (out / "grace_hopper_anonymized.jpg").read_bytes()
    with zipfile.ZipFile(got["crops.zip"]) as crops:
        assert sorted(crops.namelist()) == sorted(f"crops/{p.name}" for p in (out / "crops").iterdir())
        assert all(crops.read(f"crops/{p.name}") == p.read_bytes() for p in (out / "crops").iterdir())
    entry = json.loads((out / "detections.json").read_text())["images"][0]
    assert entry["path"] == "grace_hopper.jpg" and entry["detections"]
    rows = browser.execute_script(
        "return Array.from(document.querySelectorAll('#photo-table [role=row].virtual-row'), "
        "row => Array.from(row.querySelectorAll('[role=gridcell]'), cell => cell.textContent.trim()))")
    assert rows  # the rows in view (the table renders those only), each a detection of the JSON file
    for row in rows:
        face = entry["detections"][int(row[1]) - 1]
        assert row == ["grace_hopper.jpg", row[1], *(f"{v:g}" for v in face["box"]), f"{face['score']:g}"]


def test_text_file_named_jpg_gets_a_message(browser, tmp_path):
    fake = tmp_path / "notes.jpg"
    fake.write_text("this is not a picture\n")
    browser.refresh()
    wait_for(browser, lambda d: find(d, "#photo-files input[type=file]"))
    find(browser, "#photo-files input[type=file]")[0].send_keys(str(fake))
    wait_for(browser, lambda d: "notes" in d.find_element("id", "photo-files").text)
    find(browser, "#detect-photos")[0].click()
    assert message_for(browser, "notes.jpg") == ["notes.jpg: not an image OpenCV can decode (damaged, or not an image)"]


def test_too_large_upload_gets_a_message(browser, tmp_path):
    big = tmp_path / "big.jpg"
    big.write_bytes(cv2.imencode(".png", np.random.default_rng(0).integers(0, 256, (700, 700, 3), np.uint8))[1])
    assert big.stat().st_size > MAX_UPLOAD_MB * 1e6
    browser.refresh()
    wait_for(browser, lambda d: find(d, "#photo-files input[type=file]"))
    find(browser, "#photo-files input[type=file]")[0].send_keys(str(big))
    messages = message_for(browser, "big.jpg")
    assert any("exceed the maximum allowed size" in m for m in messages), messages


def test_video_is_anonymised_whole_with_its_sound_and_plays(browser, tmp_path):
    portrait = cv2.cvtColor(cv2.resize(cv2.imread(str(photo())), (120, 141)), cv2.COLOR_BGR2RGB)
    clip = write_video(tmp_path / "clip.mp4", frames=12, size=(141, 107), fps=10, picture=portrait)
    browser.refresh()
    wait_for(browser, lambda d: find(d, "#photo-files input[type=file]"))
    open_tab(browser, "Video")
    find(browser, "#video-input input[type=file]")[0].send_keys(str(clip))
    wait_for(browser, lambda d: find(d, "#video-input video"))
    find(browser, "#process-video")[0].click()
    wait_for(browser, lambda d: len(find(d, "#video-downloads a[data-testid=download-link]")) == 2)
    assert "12 frames" in browser.find_element("id", "video-summary").text
    playing = browser.execute_async_script("""
        const done = arguments[arguments.length - 1], video = document.querySelector('#video-result video');
        const report = () => done([video.readyState, video.videoWidth, video.duration]);
        if (video.readyState >= 2) report(); else { video.addEventListener('loadeddata', report); video.load(); }""")
    assert playing[0] >= 2 and playing[1] == 106 and playing[2] > 1, playing  # H.264 decoded: even width
    screenshot(browser, "app_video")
    got = download_all(browser, "video-downloads")
    assert sorted(got) == ["clip.json", "clip_anonymized.mp4"]
    assert video_streams(got["clip_anonymized.mp4"]) == (12, (140, 106), "h264", True)
    frames = json.loads(got["clip.json"].read_text())["images"]
    assert [f["frame"] for f in frames] == list(range(12)) and {f["path"] for f in frames} == {"clip.mp4"}


def test_bad_uploads_get_messages_and_the_server_goes_on(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip")
    with zipfile.ZipFile(tmp_path / "texts.zip", "w") as archive:
        archive.writestr("a.txt", "hello")
        archive.writestr("../evil.jpg", "outside")
    (tmp_path / "empty.png").write_bytes(b"")
    Image.new("1", (15000, 15000)).save(tmp_path / "bomb.png")  # 27 KB claiming 225 megapixels
    (tmp_path / "text.mp4").write_text("not a video")
    long_clip = write_video(tmp_path / "long.mp4", frames=60, fps=10, sound=False)
    photo_cases = {
        "notes.txt": "Invalid file type. Please upload a file that is one of these formats: "
                     "['.bmp', '.jpeg', '.jpg', '.png', '.tif', '.tiff', '.webp', '.zip']",  # Gradio's check
        "broken.zip": "broken.zip: not a zip file that can be read (damaged, or not a zip)",
        "texts.zip": "texts.zip: no image (.bmp, .jpeg, .jpg, .png, .tif, .tiff, .webp) in the zip",
        "empty.png": "empty.png: empty file (0 bytes)",
        "bomb.png": "bomb.png: 15000 x 15000 pixels (225,000,000) is more than the limit of 178,956,970 pixels",
    }
    for name, message in photo_cases.items():
        with pytest.raises(AppError) as refused:
            client.predict(files=[handle_file(str(tmp_path / name))], api_name="/photos")
        assert str(refused.value).startswith(message), str(refused.value)
    video_cases = {
        "text.mp4": "text.mp4: not a video OpenCV can read",
        "long.mp4": f"long.mp4: 6.0 s is longer than the limit of {MAX_VIDEO_SECONDS} s",
    }
    for name, message in video_cases.items():
        with pytest.raises(AppError) as refused:
            client.predict(video=handle_file(str(tmp_path / name)), api_name="/video")
        assert str(refused.value).startswith(message), str(refused.value)
    assert long_clip.is_file()
    # a good photo beside a bad one: results for the one, a warning for the other
    drawn, _, summary, table, files = client.predict(
        files=[handle_file(str(photo())), handle_file(str(tmp_path / "empty.png"))], api_name="/photos")
    assert len(drawn) == 1 and "in 1 image" in summary and "empty.png: empty file (0 bytes)" in summary


def test_eight_concurrent_api_calls_are_all_answered(client):
    from gradio_client import handle_file

    jobs = [client.submit(files=[handle_file(str(photo()))], thresh=0.3 + 0.05 * k, api_name="/photos")
            for k in range(8)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda job: job.result(timeout=WAIT), jobs))
    for k, (drawn, _, summary, table, files) in enumerate(results):
        header = json.loads(Path(next(f for f in files if f.endswith("detections.json"))).read_text())
        assert header["score_thresh"] == round(0.3 + 0.05 * k, 6) and len(drawn) == 1
        assert len(table["data"]) == len(header["images"][0]["detections"])


def test_readme_example_runs_as_written(server, tmp_path):
    """The README's gradio_client example, with this server's address and login."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Web app"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) == 5
    code = code.replace('Client("http://127.0.0.1:7860/")', f'Client("{server.url}", auth=("{USER}", "{PASSWORD}"))')
    shutil.copy(photo(), tmp_path / "photo.jpg")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=WAIT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr
    assert "faces" in done.stdout and "detections.json" in done.stdout


def test_stopping_removes_every_file_it_wrote(server):
    """SIGTERM stops the server with exit code 0, a Ctrl-C right after it does not cut the clean-up short:
    its temporary folder is gone and it wrote nowhere else."""
    assert server.workspace.is_relative_to(server.tmp) and server.workspace.is_dir()
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    server.process.send_signal(signal.SIGINT)
    assert server.stop() == 0
    assert not server.workspace.exists()
    leftovers = [p for folder in (server.tmp, server.home, server.cwd) for p in folder.rglob("*")]
    assert leftovers == [], leftovers
    log = "".join(server.lines)  # the one traceback: Gradio's report of its own file-type refusal
    assert log.count("Traceback") == log.count('gradio.exceptions.Error: "Invalid file type') == 1, log

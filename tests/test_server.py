"""`stylelab serve`: the JSON API through Flask's client (sessions, CSRF, hosts, limits, expiry), the page end to
end in headless Chromium (Debian's chromium + chromedriver, driven by Selenium) against a real server on
loopback, and `python -m stylelab serve` stopped by SIGINT/SIGTERM while a job runs."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import make_rgb, make_stripes
from stylelab.server import ServerLimits, bound_host_names, create_app, page_wording

SECURITY_HEADERS = {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "same-origin"}
LONG = 100_000  # iterations of a job that runs until it is stopped


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def wait_for(predicate, timeout=60.0, every=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")


def form(steps: int, content: bytes | None = None, **fields) -> dict:
    return {"content": (io.BytesIO(content or png_bytes(make_rgb(48, 64))), "c.png"),
            "style": (io.BytesIO(png_bytes(make_stripes(64, 64))), "s.png"),
            "backbone": "vgg19", "weights": "random", "size": "64", "iterations": str(steps), **fields}


class Visitor:
    """One browser session through Flask's test client: its cookie (from the page) and the token its POSTs send."""

    def __init__(self, app):
        self.client = app.test_client()
        page = self.client.get("/")
        assert page.status_code == 200
        self.token = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)[1]

    def get(self, url, **kwargs):
        return self.client.get(url, **kwargs)

    def post(self, url, headers=None, **kwargs):
        return self.client.post(url, headers={"X-CSRF-Token": self.token, **(headers or {})}, **kwargs)

    def submit(self, steps, content=None, headers=None, **fields):
        return self.post("/api/jobs", data=form(steps, content, **fields), content_type="multipart/form-data",
                         headers=headers)

    def status(self, job_id) -> dict:
        return self.get(f"/api/jobs/{job_id}").get_json()

    def wait_until(self, job_id, *states) -> dict:
        return wait_for(lambda: (s := self.status(job_id))["state"] in states and s)


@pytest.fixture
def app():
    app = create_app("cpu")
    yield app
    app.config["runner"].close()


@pytest.fixture
def visitor(app):
    return Visitor(app)


def test_api_runs_queues_stops_and_downloads(visitor):
    first, second = visitor.submit(LONG), visitor.submit(5)
    assert first.status_code == second.status_code == 202
    a, b = first.get_json()["id"], second.get_json()["id"]
    wait_for(lambda: visitor.status(a)["iteration"] >= 2)
    status = visitor.status(b)
    assert status["state"] == "queued" and status["position"] == 1  # one job at a time
    assert visitor.get(f"/api/jobs/{a}/preview.png").status_code == 200
    assert visitor.get(f"/api/jobs/{a}/result.png").status_code == 409
    assert visitor.post(f"/api/jobs/{a}/stop").status_code == 200
    stopped = visitor.wait_until(a, "stopped")
    assert stopped["has_result"] and stopped["iteration"] < LONG
    done = visitor.wait_until(b, "done")
    assert done["iteration"] == 5
    download = visitor.get(f"/api/jobs/{b}/result.png")
    assert "attachment" in download.headers["Content-Disposition"]
    assert Image.open(io.BytesIO(download.data)).size == (64, 48)
    assert visitor.get(f"/api/jobs/{b}/preview.png").status_code == 200  # a finished job's preview: its result


@pytest.mark.parametrize("fields, content, message", [
    ({}, b"this is not an image", "the content file is not usable: not an image Pillow can read: c.png"),
    ({"style": (io.BytesIO(b""), "")}, None, "choose a Style image or write a Style text"),
    ({"style": (io.BytesIO(b""), ""), "style_text": "   "}, None, "choose a Style image or write a Style text"),
    ({"style_text": "x" * 201}, None, "Style text must be at most 200 characters, got 201"),
    ({"backbone": "alexnet"}, None, "Backbone: unknown choice 'alexnet'; choose clip-rn50"),
    ({"weights": "mine.pth"}, None, "Weights: unknown choice 'mine.pth'; choose pretrained, random"),
    ({"original_colors": "bogus"}, None, "Colours: unknown choice 'bogus'; choose none, luminance, histogram"),
    ({"size": "big"}, None, "Size must be a whole number, got 'big'"),
    ({"size": "4096"}, None, "Size must be from 16 to 2048, got 4096"),
    ({"iterations": "0"}, None, "Iterations must be from 1 to 100000, got 0"),
])
def test_api_bad_input_is_a_clear_400_in_the_pages_words(visitor, fields, content, message):
    response = visitor.submit(5, content=content, **fields)
    error = response.get_json()["error"]
    assert response.status_code == 400 and message in error
    assert "--" not in error  # the page's controls, never CLI flags
    assert visitor.get("/api/backbones").status_code == 200  # still serving


def test_api_style_text_alone_runs_without_a_style_image(app, visitor, monkeypatch):
    from open_clip import factory

    import stylelab.backbones.clip_text as clip_text

    # A tiny random CLIP as the text model (weights=random makes it random): offline and quick.
    monkeypatch.setitem(factory._MODEL_CONFIGS, "stylelab-tiny", {
        "embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}})
    monkeypatch.setattr(clip_text, "DEFAULT_TEXT_MODEL", "open_clip:stylelab-tiny")
    response = visitor.submit(2, style=(io.BytesIO(b""), ""), style_text="  a watercolor painting  ")
    assert response.status_code == 202, response.get_json()
    job = response.get_json()["id"]
    assert app.config["runner"].jobs[job].options["style_text"] == "a watercolor painting"
    done = visitor.wait_until(job, "done", "failed")
    assert done["state"] == "done", done["message"]
    download = visitor.get(f"/api/jobs/{job}/result.png")
    assert Image.open(io.BytesIO(download.data)).size == (64, 48)


def test_library_messages_about_the_style_text_speak_of_the_pages_control():
    assert page_wording("style_text= must be words describing the style, got ''") == \
        "Style text must be words describing the style, got ''"
    assert page_wording("no style: give CONTENT STYLE, or --style-text") == "no style: give CONTENT STYLE, or Style text"


def test_api_failed_job_reports_in_the_pages_words_and_server_continues(visitor):
    response = visitor.submit(5, weights="pretrained")  # offline: the weights are not cached
    failed = visitor.wait_until(response.get_json()["id"], "failed")
    assert "not cached" in failed["message"] and "choose Weights: random" in failed["message"]
    assert "--weights" not in failed["message"] and "weights=" not in failed["message"]
    ok = visitor.submit(3).get_json()["id"]
    visitor.wait_until(ok, "done")


def test_backbones_say_whether_pretrained_weights_are_on_this_machine(visitor):
    data = visitor.get("/api/backbones").get_json()
    assert data["default"] == "vgg19"
    vgg = next(entry for entry in data["backbones"] if entry["name"] == "vgg19")
    assert vgg == {"name": "vgg19", "pretrained_cached": False,
                   "note": "pretrained VGG19 weights are not on this machine: using random weights (texture only)"}
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"  # in conftest's private TORCH_HOME
    checkpoints.mkdir(parents=True)
    (checkpoints / "vgg19-dcbb9e9d.pth").touch()  # torchvision's file name: its presence is what counts
    vgg = next(entry for entry in visitor.get("/api/backbones").get_json()["backbones"] if entry["name"] == "vgg19")
    assert vgg["pretrained_cached"] and vgg["note"] == ""


# -- other sites: hosts, origins, CSRF ---------------------------------------------------------------------


def test_a_foreign_host_is_refused(app, visitor):
    for host in ("evil.example", "evil.example:8000", "localhost.evil.example", "127.0.0.1.nip.io:5000"):
        for response in (visitor.get("/", headers={"Host": host}),
                         visitor.get("/api/backbones", headers={"Host": host}),
                         visitor.submit(5, headers={"Host": host})):
            assert response.status_code == 400 and "unknown host" in response.get_json()["error"]
    assert visitor.get("/", headers={"Host": "127.0.0.1:5000"}).status_code == 200  # loopback, any port

    app.config["ALLOWED_HOSTS"] = bound_host_names("127.0.0.1", 8000)  # what serve() sets once bound
    for host, status in (("127.0.0.1:8000", 200), ("localhost:8000", 200), ("[::1]:8000", 200),
                         ("localhost:8001", 400), ("localhost", 400), ("[::1]", 400)):
        assert visitor.get("/api/backbones", headers={"Host": host}).status_code == status, host


def test_a_cross_origin_post_is_refused_even_with_a_valid_token(visitor):
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"},
                    {"Origin": "http://localhost:8000"},  # another port is another origin
                    {"Referer": "http://evil.example/page.html"}):
        response = visitor.submit(5, headers=headers)
        assert response.status_code == 403 and "cross-origin" in response.get_json()["error"], headers
    same_origin = visitor.submit(3, headers={"Origin": "http://localhost", "Referer": "http://localhost/"})
    assert same_origin.status_code == 202
    visitor.wait_until(same_origin.get_json()["id"], "done")


def test_a_post_without_the_csrf_token_is_refused(app, visitor):
    job = visitor.submit(LONG).get_json()["id"]
    for headers in ({"X-CSRF-Token": ""}, {"X-CSRF-Token": "x" * len(visitor.token)}):
        for response in (visitor.submit(5, headers=headers), visitor.post(f"/api/jobs/{job}/stop", headers=headers)):
            assert response.status_code == 403 and "CSRF token" in response.get_json()["error"]
    no_session = app.test_client()  # never loaded the page: no cookie
    response = no_session.post("/api/jobs", data=form(5), headers={"X-CSRF-Token": visitor.token})
    assert response.status_code == 403 and "reload the page" in response.get_json()["error"]
    assert visitor.status(job)["state"] in ("queued", "running")  # nothing stopped it


def test_security_headers_and_session_cookie(app, visitor):
    responses = [visitor.get("/"), visitor.get("/api/backbones"), visitor.get("/api/jobs/nope"),
                 visitor.submit(5, size="big"), visitor.submit(5, headers={"X-CSRF-Token": ""}),
                 visitor.get("/", headers={"Host": "evil.example"})]
    assert [r.status_code for r in responses] == [200, 200, 404, 400, 403, 400]
    for response in responses:
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "img-src 'self' blob: data:" in csp
        assert {name: response.headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS

    fresh = app.test_client()
    pages = [fresh.get("/") for _ in range(2)]
    nonces = [re.search(r"script-src 'nonce-([^']+)'", p.headers["Content-Security-Policy"])[1] for p in pages]
    assert nonces[0] != nonces[1]  # a nonce per page load
    assert f'<script nonce="{nonces[1]}">' in pages[1].text
    assert "unsafe-inline" not in pages[1].headers["Content-Security-Policy"]
    cookie = pages[0].headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert pages[0].headers["Cache-Control"] == "no-store"  # the page holds the CSRF token


# -- ownership ----------------------------------------------------------------------------------------------


def test_another_sessions_job_answers_404_like_an_unknown_one(app, visitor):
    other = Visitor(app)
    job = visitor.submit(LONG).get_json()["id"]
    wait_for(lambda: visitor.status(job)["has_preview"])
    unknown = "x" * len(job)

    def refused(response, job_id):
        return response.status_code == 404 and response.get_json() == {"error": f"no job {job_id}"}

    for job_id in (job, unknown):  # the same answer: another session cannot even learn the id exists
        assert refused(other.get(f"/api/jobs/{job_id}"), job_id)
        assert refused(other.get(f"/api/jobs/{job_id}/preview.png"), job_id)
        assert refused(other.get(f"/api/jobs/{job_id}/result.png"), job_id)
        assert refused(other.post(f"/api/jobs/{job_id}/stop"), job_id)
    assert refused(app.test_client().get(f"/api/jobs/{job}"), job)  # no session at all
    assert visitor.status(job)["state"] == "running"  # the other session's stop did nothing
    visitor.post(f"/api/jobs/{job}/stop")
    assert visitor.wait_until(job, "stopped")["has_result"]
    assert refused(other.get(f"/api/jobs/{job}/result.png"), job)
    assert visitor.get(f"/api/jobs/{job}/result.png").status_code == 200


def test_a_burst_of_new_sessions_does_not_evict_one_with_jobs():
    app = create_app("cpu", limits=ServerLimits(max_sessions=3))
    try:
        visitor = Visitor(app)
        job = visitor.submit(2).get_json()["id"]
        visitor.wait_until(job, "done")
        for _ in range(5):  # e.g. another site making the browser load the page again and again
            Visitor(app)
        assert visitor.get(f"/api/jobs/{job}/result.png").status_code == 200
        assert visitor.post(f"/api/jobs/{job}/stop").status_code == 200  # its token still holds
    finally:
        app.config["runner"].close()


def test_job_ids_are_unguessable(visitor):
    ids = [visitor.submit(2).get_json()["id"] for _ in range(3)]
    for job_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{24,}", job_id)
        assert len(base64.urlsafe_b64decode(job_id + "=" * (-len(job_id) % 4))) * 8 >= 128  # random bits
    assert len(set(ids)) == 3 and len({job_id[:6] for job_id in ids}) == 3  # no shared, counting prefix
    for job_id in ids:
        visitor.wait_until(job_id, "done")


# -- resources ----------------------------------------------------------------------------------------------


def test_the_queue_is_capped_per_session_and_per_server(app):
    a, b, c = Visitor(app), Visitor(app), Visitor(app)
    a_jobs = [a.submit(LONG) for _ in range(3)]
    assert [r.status_code for r in a_jobs] == [202] * 3
    full = a.submit(5)
    assert full.status_code == 429 and "you already have 3 jobs waiting or running" in full.get_json()["error"]
    assert [b.submit(LONG).status_code for _ in range(3)] == [202] * 3
    assert [c.submit(LONG).status_code for _ in range(2)] == [202] * 2
    full = c.submit(5)  # c has 2 of its 3, but the server holds 8
    assert full.status_code == 429 and "the queue is full (8 jobs" in full.get_json()["error"]
    a.post(f"/api/jobs/{a_jobs[2].get_json()['id']}/stop")  # a cancelled job frees its place
    assert c.submit(LONG).status_code == 202


def test_size_times_iterations_over_the_work_budget_is_a_400(visitor):
    for size, iterations in ((2048, 2000), (512, 2001)):
        response = visitor.submit(iterations, size=str(size))
        error = response.get_json()["error"]
        assert response.status_code == 400 and "Size" in error and "Iterations" in error, error
    response = visitor.submit(2000, size="1024")
    assert "at Size 1024: at most 500 Iterations" in response.get_json()["error"]
    assert visitor.get("/api/backbones").status_code == 200


def test_a_pixel_bomb_is_refused_from_its_header_quickly(app, visitor):
    bomb = png_bytes(Image.new("1", (9000, 9000)))  # 81 megapixels in a small file
    assert len(bomb) < 200_000
    start = time.monotonic()
    response = visitor.submit(5, content=bomb)
    elapsed = time.monotonic() - start
    error = response.get_json()["error"]
    assert response.status_code == 400 and "the content image is 9000×9000 = 81,000,000 pixels" in error
    assert "above the limit of 40,000,000" in error
    assert elapsed < 2.0, elapsed
    assert list(app.config["runner"].workdir.iterdir()) == []  # nothing left behind


def test_finished_jobs_expire_with_their_folders():
    app = create_app("cpu", limits=ServerLimits(finished_ttl=0.0))
    try:
        visitor = Visitor(app)
        job_id = visitor.submit(3).get_json()["id"]
        folder = app.config["runner"].jobs[job_id].folder
        assert folder.is_dir()
        wait_for(lambda: visitor.get(f"/api/jobs/{job_id}").status_code == 404)
        assert not folder.exists() and job_id not in app.config["runner"].jobs
    finally:
        app.config["runner"].close()


def test_only_the_newest_finished_jobs_of_a_session_are_kept():
    app = create_app("cpu", limits=ServerLimits(max_finished_per_session=1))
    try:
        visitor = Visitor(app)
        first = visitor.submit(2).get_json()["id"]
        visitor.wait_until(first, "done")
        folder = app.config["runner"].jobs[first].folder
        second = visitor.submit(2).get_json()["id"]
        visitor.wait_until(second, "done")
        wait_for(lambda: visitor.get(f"/api/jobs/{first}").status_code == 404)
        assert not folder.exists()
        assert visitor.get(f"/api/jobs/{second}/result.png").status_code == 200
    finally:
        app.config["runner"].close()


def test_close_stops_the_running_job_and_removes_the_work_folder():
    app = create_app("cpu")
    runner = app.config["runner"]
    visitor = Visitor(app)
    running, queued = visitor.submit(LONG).get_json()["id"], visitor.submit(LONG).get_json()["id"]
    wait_for(lambda: visitor.status(running)["iteration"] >= 1)
    start = time.monotonic()
    assert runner.close(timeout=30)
    assert time.monotonic() - start < 15 and not runner.thread.is_alive()
    assert not runner.workdir.exists()
    assert runner.jobs[running].state == "stopped" and runner.jobs[queued].state == "cancelled"


# -- the page in Chromium -------------------------------------------------------------------------------------


@pytest.fixture
def live_server():
    from werkzeug.serving import make_server

    app = create_app("cpu")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    app.config["runner"].close()


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    yield driver
    driver.quit()


def test_page_upload_watch_stop_download_and_bad_file(live_server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    content, style, bad = tmp_path / "content.png", tmp_path / "style.png", tmp_path / "notes.txt"
    make_rgb(48, 64).save(content)
    make_stripes(64, 64).save(style)
    bad.write_text("definitely not a picture")
    browser.get(live_server + "/")
    wait = WebDriverWait(browser, 60, poll_frequency=0.1)
    wait.until(lambda d: len(Select(d.find_element(By.ID, "backbone")).options) >= 4)
    # First use offline: vgg19 with random weights, and the page says why.
    assert Select(browser.find_element(By.ID, "backbone")).first_selected_option.get_attribute("value") == "vgg19"
    wait.until(lambda d: Select(d.find_element(By.ID, "weights")).first_selected_option.get_attribute("value")
               == "random")
    assert "pretrained VGG19 weights are not on this machine" in browser.find_element(By.ID, "weights-note").text
    style_text = browser.find_element(By.ID, "style_text")  # a written style, next to the style image
    assert (style_text.get_attribute("name"), style_text.get_attribute("maxlength")) == ("style_text", "200")
    assert "watercolor" in browser.find_element(By.ID, "style-text-hint").text

    def fill(content_file, iterations, weights="random"):
        browser.find_element(By.ID, "content").send_keys(str(content_file))
        browser.find_element(By.ID, "style").send_keys(str(style))
        Select(browser.find_element(By.ID, "backbone")).select_by_value("vgg19")
        Select(browser.find_element(By.ID, "weights")).select_by_value(weights)
        for name, value in (("size", "64"), ("iterations", str(iterations))):
            field = browser.find_element(By.ID, name)
            field.clear()
            field.send_keys(value)
        browser.find_element(By.ID, "start").click()

    def state(d):
        return d.find_element(By.ID, "status").get_attribute("data-state")

    # A bad file: a clear message in the page, and the server keeps running.
    fill(bad, 5)
    wait.until(lambda d: "not an image" in d.find_element(By.ID, "message").text)
    assert "content file is not usable" in browser.find_element(By.ID, "message").text

    # A failed job (pretrained weights offline): its message once, in the page's words.
    fill(content, 5, weights="pretrained")
    wait.until(lambda d: state(d) == "failed")
    message = wait.until(lambda d: d.find_element(By.ID, "message").text)
    assert "choose Weights: random" in message and "--weights" not in message
    assert browser.find_element(By.ID, "status").text == "failed"  # not a second copy of the message

    # A long run: watch it evolve (iteration, loss, it/s, preview), stop it, download the result.
    fill(content, LONG)
    wait.until(lambda d: state(d) == "running" and "it/s" in d.find_element(By.ID, "status").text)
    assert browser.find_element(By.ID, "message").text == ""
    wait.until(lambda d: d.execute_script("return document.getElementById('preview').naturalWidth") == 64)
    first = browser.find_element(By.ID, "status").text
    wait.until(lambda d: d.find_element(By.ID, "status").text != first)  # it moves
    assert "loss" in browser.find_element(By.ID, "status").text
    browser.find_element(By.ID, "stop").click()
    wait.until(lambda d: state(d) == "stopped")
    link = wait.until(lambda d: (a := d.find_element(By.ID, "download")).is_displayed() and a)
    href = link.get_attribute("href")
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in browser.get_cookies())
    with urllib.request.urlopen(urllib.request.Request(href, headers={"Cookie": cookie})) as response:
        assert Image.open(io.BytesIO(response.read())).size == (64, 48)
    with pytest.raises(urllib.error.HTTPError) as refused:  # without the browser's session: not its job
        urllib.request.urlopen(href)
    assert refused.value.code == 404
    assert browser.find_element(By.ID, "start").is_enabled()
    violations = [entry for entry in browser.get_log("browser") if "Content Security Policy" in entry["message"]]
    assert violations == []  # the page's own script and style pass its CSP


# -- `stylelab serve` as a process: Ctrl+C and SIGTERM while a job runs ----------------------------------------


def multipart(fields: dict[str, str], files: dict[str, bytes]) -> tuple[bytes, str]:
    boundary = secrets.token_hex(16)
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
             for name, value in fields.items()]
    parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.png"\r\n'
              f"Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n" for name, data in files.items()]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_stops_its_running_job_and_exits_0_on(signum, tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "stylelab", "serve", "--port", "0", "--device", "cpu"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "TMPDIR": str(tmp_path)})  # its work folder lands here
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()
    try:
        url = wait_for(lambda: (m := re.search(r"open (http://\S+/)", "".join(lines))) and m[1], timeout=120)
        with urllib.request.urlopen(url + "api/session") as response:
            cookie = response.headers["Set-Cookie"].split(";")[0]
            token = json.load(response)["csrf_token"]
        body, content_type = multipart(
            {"backbone": "vgg19", "weights": "random", "size": "64", "iterations": str(LONG)},
            {"content": png_bytes(make_rgb(48, 64)), "style": png_bytes(make_stripes(64, 64))})
        headers = {"Cookie": cookie, "X-CSRF-Token": token, "Content-Type": content_type}
        with urllib.request.urlopen(urllib.request.Request(url + "api/jobs", body, headers)) as response:
            job = json.load(response)["id"]

        def running() -> bool:
            with urllib.request.urlopen(urllib.request.Request(f"{url}api/jobs/{job}", headers={"Cookie": cookie})) \
                    as response:
                status = json.load(response)
            return status["state"] == "running" and status["iteration"] >= 2

        wait_for(running, timeout=120, every=0.2)
        assert list(tmp_path.glob("stylelab-serve-*"))
        process.send_signal(signum)
        assert process.wait(timeout=20) == 0
        reader.join(5)
        stderr = "".join(lines)
        assert "terminate called" not in stderr and "Traceback" not in stderr, stderr
        assert list(tmp_path.glob("stylelab-serve-*")) == []  # the work folder went with it
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

"""`stylelab serve`: the JSON API through Flask's client, and the page end to end in headless Chromium
(Debian's chromium + chromedriver, driven by Selenium) against a real server on loopback."""

from __future__ import annotations

import io
import threading
import time
import urllib.request

import pytest
from PIL import Image

from conftest import make_rgb, make_stripes
from stylelab.server import create_app


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


@pytest.fixture
def client():
    app = create_app("cpu")
    return app.test_client()


def submit(client, steps, content=None, **fields):
    data = {"content": (io.BytesIO(content or png_bytes(make_rgb(48, 64))), "c.png"),
            "style": (io.BytesIO(png_bytes(make_stripes(64, 64))), "s.png"),
            "backbone": "vgg19", "weights": "random", "size": "64", "iterations": str(steps), **fields}
    return client.post("/api/jobs", data=data, content_type="multipart/form-data")


def test_api_runs_queues_stops_and_downloads(client):
    first, second = submit(client, 100000), submit(client, 5)
    assert first.status_code == second.status_code == 202
    a, b = first.get_json()["id"], second.get_json()["id"]
    wait_for(lambda: client.get(f"/api/jobs/{a}").get_json()["iteration"] >= 2)
    status = client.get(f"/api/jobs/{b}").get_json()
    assert status["state"] == "queued" and status["position"] == 1  # one job at a time
    assert client.get(f"/api/jobs/{a}/preview.png").status_code == 200
    assert client.get(f"/api/jobs/{a}/result.png").status_code == 409
    client.post(f"/api/jobs/{a}/stop")
    stopped = wait_for(lambda: (s := client.get(f"/api/jobs/{a}").get_json())["state"] == "stopped" and s)
    assert stopped["has_result"] and stopped["iteration"] < 100000
    done = wait_for(lambda: (s := client.get(f"/api/jobs/{b}").get_json())["state"] == "done" and s)
    assert done["iteration"] == 5
    download = client.get(f"/api/jobs/{b}/result.png")
    assert "attachment" in download.headers["Content-Disposition"]
    assert Image.open(io.BytesIO(download.data)).size == (64, 48)


@pytest.mark.parametrize("fields, content, message", [
    ({}, b"this is not an image", "the content file is not usable: not an image"),
    ({"backbone": "alexnet"}, None, "unknown backbone 'alexnet'; choose clip-rn50"),
    ({"size": "big"}, None, "size must be a whole number"),
    ({"iterations": "0"}, None, "iterations must be from 1"),
    ({"weights": "mine.pth"}, None, "weights must be pretrained or random"),
])
def test_api_bad_input_is_a_clear_400(client, fields, content, message):
    response = submit(client, 5, content=content, **fields)
    assert response.status_code == 400 and message in response.get_json()["error"]
    assert client.get("/api/backbones").status_code == 200  # still serving


def test_api_failed_job_reports_and_server_continues(client):
    response = submit(client, 5, weights="pretrained")  # offline: the weights are not cached
    job = response.get_json()["id"]
    failed = wait_for(lambda: (s := client.get(f"/api/jobs/{job}").get_json())["state"] == "failed" and s)
    assert "not cached" in failed["message"]
    ok = submit(client, 3).get_json()["id"]
    wait_for(lambda: client.get(f"/api/jobs/{ok}").get_json()["state"] == "done")


@pytest.fixture
def live_server():
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, create_app("cpu"), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


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

    def fill(content_file, iterations):
        browser.find_element(By.ID, "content").send_keys(str(content_file))
        browser.find_element(By.ID, "style").send_keys(str(style))
        Select(browser.find_element(By.ID, "backbone")).select_by_value("vgg19")
        Select(browser.find_element(By.ID, "weights")).select_by_value("random")
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

    # A long run: watch it evolve (iteration, loss, it/s, preview), stop it, download the result.
    fill(content, 100000)
    wait.until(lambda d: state(d) == "running" and "it/s" in d.find_element(By.ID, "status").text)
    wait.until(lambda d: d.execute_script("return document.getElementById('preview').naturalWidth") == 64)
    first = browser.find_element(By.ID, "status").text
    wait.until(lambda d: d.find_element(By.ID, "status").text != first)  # it moves
    assert "loss" in browser.find_element(By.ID, "status").text
    browser.find_element(By.ID, "stop").click()
    wait.until(lambda d: state(d) == "stopped")
    link = wait.until(lambda d: (a := d.find_element(By.ID, "download")).is_displayed() and a)
    with urllib.request.urlopen(link.get_attribute("href")) as response:
        assert Image.open(io.BytesIO(response.read())).size == (64, 48)
    assert browser.find_element(By.ID, "start").is_enabled()

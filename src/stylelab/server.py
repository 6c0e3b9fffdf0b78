"""``stylelab serve``: a local web page to stylize uploads and watch the image evolve (Flask).

One worker thread runs the jobs one at a time (one device); the rest wait in a queue. The page polls a JSON
status (iteration, loss, it/s) and a PNG preview; a job can be stopped, and its result downloaded.
"""

from __future__ import annotations

import io
import itertools
import queue
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch
from flask import Flask, Response, jsonify, request, send_file

from .api import transfer
from .backbones import list_backbones
from .errors import StylelabError
from .images import MAX_SIZE, load_image, tensor_to_pil
from .optimize import ProgressEvent, StopOptimization

MAX_UPLOAD_BYTES = 64 * 2**20
MAX_ITERATIONS = 100_000


class JobNotFound(StylelabError):
    """An unknown job id: answered with 404 (other user errors are 400)."""


@dataclass
class Job:
    number: int  # submission order
    content: Path
    style: Path
    options: dict
    state: str = "queued"  # queued -> running -> done | stopped | failed; queued -> cancelled
    message: str = ""
    iteration: int = 0
    iterations: int = 0
    loss: float | None = None
    its: float | None = None
    preview: torch.Tensor | None = None
    result: torch.Tensor | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def id(self) -> str:
        return f"job{self.number}"

    def status(self, position: int | None) -> dict:
        return {"id": self.id, "state": self.state, "message": self.message, "iteration": self.iteration,
                "iterations": self.iterations, "loss": self.loss, "its": self.its, "position": position,
                "has_preview": self.preview is not None, "has_result": self.result is not None}


class JobRunner:
    """A queue of jobs and the one thread that runs them on the device."""

    def __init__(self, device: str = "auto"):
        self.device = device
        self.jobs: dict[str, Job] = {}
        self.waiting: queue.Queue[Job] = queue.Queue()
        self.lock = threading.Lock()
        self._ids = itertools.count(1)
        self.workdir = Path(tempfile.mkdtemp(prefix="stylelab-serve-"))
        self.thread = threading.Thread(target=self._work, name="stylelab-worker", daemon=True)
        self.thread.start()

    def submit(self, content: bytes, style: bytes, options: dict) -> Job:
        number = next(self._ids)
        folder = self.workdir / f"job{number}"
        folder.mkdir()
        paths = []
        for name, data in (("content", content), ("style", style)):
            path = folder / name
            path.write_bytes(data)
            try:
                load_image(path)  # a bad upload is refused now, with the reader's message
            except StylelabError as exc:
                shutil.rmtree(folder, ignore_errors=True)
                raise StylelabError(f"the {name} file is not usable: {str(exc).replace(str(path), name)}") from None
            paths.append(path)
        job = Job(number, paths[0], paths[1], options, iterations=options["iterations"])
        with self.lock:
            self.jobs[job.id] = job
        self.waiting.put(job)
        return job

    def position(self, job: Job) -> int | None:
        """How many jobs run or wait before this one (0 = running next or now)."""
        if job.state != "queued":
            return None
        with self.lock:
            ahead = [j for j in self.jobs.values()
                     if j.state in ("queued", "running") and j.number < job.number]
        return len(ahead)

    def _work(self) -> None:
        while True:
            job = self.waiting.get()
            if job.state == "cancelled":
                continue
            job.state = "running"
            try:
                result = transfer(job.content, job.style, device=self.device,
                                  callback=lambda e: self._progress(job, e), **job.options)
                job.result = result.image
                job.state = "stopped" if job.stop.is_set() else "done"
                job.message = f"{result.iterations} iterations in {result.seconds:.1f} s on {result.device}"
            except StylelabError as exc:
                job.state, job.message = "failed", str(exc)
            except Exception as exc:  # the server must keep serving whatever one job does
                job.state, job.message = "failed", f"{type(exc).__name__}: {exc}"

    def _progress(self, job: Job, event: ProgressEvent) -> None:
        job.iteration, job.iterations, job.loss = event.iteration, event.iterations, event.loss
        job.its = event.iteration / max(event.elapsed, 1e-9)
        if event.image is not None:
            job.preview = event.image.detach().clamp(0, 1).cpu()
        if job.stop.is_set():
            raise StopOptimization

    def stop(self, job: Job) -> None:
        job.stop.set()
        if job.state == "queued":
            job.state = "cancelled"


def _png(image: torch.Tensor) -> io.BytesIO:
    buffer = io.BytesIO()
    tensor_to_pil(image).save(buffer, format="PNG")
    buffer.seek(0)
    return buffer


def _int_field(name: str, default: int, low: int, high: int) -> int:
    text = request.form.get(name, "") or str(default)
    try:
        value = int(text)
    except ValueError:
        raise StylelabError(f"{name} must be a whole number, got {text!r}") from None
    if not low <= value <= high:
        raise StylelabError(f"{name} must be from {low} to {high}, got {value}")
    return value


def create_app(device: str = "auto") -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_BYTES
    runner = JobRunner(device)
    app.config["runner"] = runner
    page = resources.files("stylelab").joinpath("web/index.html").read_text()
    backbones = [entry.name for entry in list_backbones()]

    def job_or_404(job_id: str) -> Job:
        job = runner.jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id}")
        return job

    @app.errorhandler(StylelabError)
    def user_error(exc):
        return jsonify(error=str(exc)), 404 if isinstance(exc, JobNotFound) else 400

    @app.errorhandler(413)
    def too_large(exc):
        return jsonify(error=f"upload too large (limit {MAX_UPLOAD_BYTES // 2**20} MB)"), 413

    @app.get("/")
    def index():
        return Response(page, mimetype="text/html")

    @app.get("/api/backbones")
    def get_backbones():
        return jsonify(backbones=backbones)

    @app.post("/api/jobs")
    def post_job():
        files = {name: request.files.get(name) for name in ("content", "style")}
        missing = [name for name, f in files.items() if f is None or not f.filename]
        if missing:
            raise StylelabError(f"choose a {' and a '.join(missing)} image")
        backbone = request.form.get("backbone", "vgg19")
        if backbone not in backbones:
            raise StylelabError(f"unknown backbone {backbone!r}; choose {', '.join(backbones)}")
        weights = request.form.get("weights", "pretrained")
        if weights not in ("pretrained", "random"):
            raise StylelabError("weights must be pretrained or random")
        options = {"backbone": backbone, "weights": weights,
                   "size": _int_field("size", 384, 16, MAX_SIZE),
                   "iterations": _int_field("iterations", 300, 1, MAX_ITERATIONS)}
        colors = request.form.get("original_colors", "none")
        if colors != "none":
            options["original_colors"] = colors
        job = runner.submit(files["content"].read(), files["style"].read(), options)
        return jsonify(job.status(runner.position(job))), 202

    @app.get("/api/jobs/<job_id>")
    def get_job(job_id):
        job = job_or_404(job_id)
        return jsonify(job.status(runner.position(job)))

    @app.post("/api/jobs/<job_id>/stop")
    def stop_job(job_id):
        job = job_or_404(job_id)
        runner.stop(job)
        return jsonify(job.status(runner.position(job)))

    @app.get("/api/jobs/<job_id>/preview.png")
    def preview(job_id):
        job = job_or_404(job_id)
        image = job.result if job.result is not None else job.preview
        if image is None:
            return jsonify(error="no picture yet"), 404
        response = send_file(_png(image), mimetype="image/png")
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/api/jobs/<job_id>/result.png")
    def result(job_id):
        job = job_or_404(job_id)
        if job.result is None:
            return jsonify(error=f"job {job_id} has no result ({job.state})"), 409
        return send_file(_png(job.result), mimetype="image/png", as_attachment=True,
                         download_name=f"stylelab-{job_id}.png")

    return app


def serve(host: str = "127.0.0.1", port: int = 8000, device: str = "auto", log=print) -> None:
    from werkzeug.serving import make_server

    try:
        server = make_server(host, port, create_app(device), threaded=True)
    except OSError as exc:
        raise StylelabError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    log(f"stylelab serve: open http://{host}:{server.server_port}/ (Ctrl+C to stop)")
    if host not in ("127.0.0.1", "localhost", "::1"):
        log("stylelab serve: listening beyond this machine; anyone who can reach it can run jobs")
    try:
        server.serve_forever()
    finally:
        server.server_close()

"""``stylelab serve``: a local web page to stylize uploads and watch the image evolve (Flask).

One worker thread runs the jobs one at a time (one device); the rest wait in a queue. The page polls a JSON
status (iteration, loss, it/s) and a PNG preview; a job can be stopped, and its result downloaded.

Safe to leave running on a workstation:

* ownership: each browser gets a session (a random id in an HttpOnly, SameSite=Strict cookie); job ids are
  random, and a job is seen only by the session that created it (another session's id answers 404, like an
  unknown one);
* other sites: only requests addressed to the bound host names are answered (DNS rebinding), a POST must be
  same-origin and carry the session's CSRF token (``X-CSRF-Token``), and every response forbids framing and
  carries a Content-Security-Policy;
* resources: uploads are decoded one at a time under a pixel budget, the queue and each job's work are
  capped, finished jobs expire with their files, and the work folder is removed at exit.
"""

from __future__ import annotations

import atexit
import hmac
import io
import ipaddress
import itertools
import os
import queue
import re
import secrets
import shutil
import signal
import socket
import tempfile
import threading
import time
import warnings
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import torch
from flask import Flask, Response, jsonify, request, send_file
from PIL import Image

from .api import transfer
from .backbones import Backbone, create_backbone, list_backbones
from .colour import ORIGINAL_COLORS
from .errors import StylelabError
from .images import load_image, tensor_to_pil
from .optimize import ProgressEvent, StopOptimization
from .weights import hub_checkpoint_dir

MAX_UPLOAD_BYTES = 64 * 2**20
ID_BYTES = 18  # job and session ids: 144 random bits
DEFAULT_ALLOWED_HOSTS = ("localhost", "127.0.0.1")  # any port: what Flask's test client and loopback use
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
WILDCARD_HOSTS = ("", "0.0.0.0", "::")  # bind every interface
WEIGHT_CHOICES = ("pretrained", "random")
CSRF_HEADER = "X-CSRF-Token"
KEPT_BACKBONES = 2  # built networks the worker keeps between jobs (weights are loaded once, not per job)
MAX_STYLE_TEXT = 200  # characters of a written style (CLIP reads at most 77 tokens of it anyway)

# The page's controls, by form field: every message the page shows speaks of these, not of CLI flags.
CONTROLS = {"content": "Content image", "style": "Style image", "style_text": "Style text", "backbone": "Backbone",
            "weights": "Weights", "size": "Size", "iterations": "Iterations", "original_colors": "Colours"}

BASE_CSP = ("default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "same-origin"}


@dataclass(frozen=True)
class ServerLimits:
    """What one server accepts; the defaults suit a workstation left running."""

    max_pixels: int = 40_000_000  # per uploaded image, read from its header before it is decoded
    min_size: int = 16
    max_size: int = 2048  # Size: the result's long edge, px
    max_iterations: int = 100_000
    work_budget: int = 512 * 512 * 2000  # Size² × Iterations per job: 2000 iterations at 512 px
    max_pending: int = 8  # jobs queued or running on the whole server
    max_pending_per_session: int = 3
    finished_ttl: float = 3600.0  # seconds a finished job and its result are kept
    max_finished_per_session: int = 10  # older finished jobs go first
    max_sessions: int = 256  # the least recently seen go first
    sweep_every: float = 30.0  # seconds between expiry sweeps while idle


class ServerError(StylelabError):
    """A request the server refuses; ``status`` is its HTTP status."""

    status = 400


class JobNotFound(ServerError):
    """An unknown job id, or another session's: the same 404 for both."""

    status = 404


class Forbidden(ServerError):
    status = 403


class QueueFull(ServerError):
    status = 429


# -- sessions ---------------------------------------------------------------------------------------------


@dataclass
class Session:
    id: str
    csrf_token: str
    last_seen: float


class Sessions:
    """Browser sessions by id; beyond ``limit`` the least recently seen is dropped, one without jobs first
    (any page, even another site's, can make a browser load ours and so create sessions)."""

    def __init__(self, limit: int, has_jobs: Callable[[str], bool]):
        self.limit = limit
        self.has_jobs = has_jobs
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def get(self, session_id: str | None) -> Session | None:
        with self._lock:
            found = self._by_id.get(session_id or "")
            if found is not None:
                found.last_seen = time.monotonic()
            return found

    def create(self) -> Session:
        created = Session(secrets.token_urlsafe(ID_BYTES), secrets.token_urlsafe(ID_BYTES), time.monotonic())
        with self._lock:
            self._by_id[created.id] = created
            while len(self._by_id) > self.limit:
                oldest = min(self._by_id.values(), key=lambda s: (self.has_jobs(s.id), s.last_seen))
                del self._by_id[oldest.id]
        return created


# -- jobs -------------------------------------------------------------------------------------------------


@dataclass
class Job:
    id: str
    number: int  # submission order
    session: str
    folder: Path
    options: dict
    has_style: bool = True  # a style image was uploaded (without one, the written style alone: options' style_text)
    state: str = "queued"  # queued -> running -> done | stopped | failed; queued -> cancelled
    message: str = ""
    iteration: int = 0
    iterations: int = 0
    loss: float | None = None
    its: float | None = None
    preview: torch.Tensor | None = None  # kept in memory only while the job runs
    result: Path | None = None  # the result's PNG, in the job's folder
    finished_at: float | None = None  # time.monotonic()
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def content(self) -> Path:
        return self.folder / "content"

    @property
    def style(self) -> Path:
        return self.folder / "style"

    def status(self, position: int | None) -> dict:
        return {"id": self.id, "state": self.state, "message": self.message, "iteration": self.iteration,
                "iterations": self.iterations, "loss": self.loss, "its": self.its, "position": position,
                "has_preview": self.preview is not None or self.result is not None,
                "has_result": self.result is not None}


class JobRunner:
    """A queue of jobs and the one thread that runs them on the device; ``close`` stops both."""

    def __init__(self, device: str = "auto", limits: ServerLimits | None = None):
        self.device = device
        self.limits = limits or ServerLimits()
        self.jobs: dict[str, Job] = {}
        self.waiting: queue.Queue[Job | None] = queue.Queue()  # None: the worker's signal to end
        self.lock = threading.Lock()
        self.decoding = threading.BoundedSemaphore(1)  # one upload decoded at a time bounds the memory
        self.backbones: OrderedDict[tuple[str, str], Backbone] = OrderedDict()  # the worker's, most recent last
        self._numbers = itertools.count(1)
        self.workdir = Path(tempfile.mkdtemp(prefix="stylelab-serve-"))
        atexit.register(self._remove_workdir)  # also when the process ends without close()
        self.thread = threading.Thread(target=self._work, name="stylelab-worker", daemon=True)
        self.thread.start()

    def submit(self, session: str, uploads: dict[str, tuple[bytes, str]], options: dict) -> Job:
        """Queue a job for ``session``; ``uploads`` maps content and, unless ``options`` has a style_text, style
        to (bytes, the browser's file name)."""
        if "content" not in uploads or ("style" not in uploads and not options.get("style_text")):
            raise ServerError("a job needs a content image, and a style image or a style text")
        with self.lock:
            self._check_room(session)  # before any decoding work
        for name, (data, _) in uploads.items():
            self._check_pixels(name, data)
        job_id = secrets.token_urlsafe(ID_BYTES)
        folder = self.workdir / job_id
        folder.mkdir()
        try:
            for name, (data, filename) in uploads.items():
                path = folder / name
                path.write_bytes(data)
                self._check_decodes(name, path, filename)
            with self.lock:
                self._check_room(session)  # again: other requests may have queued meanwhile
                job = Job(job_id, next(self._numbers), session, folder, options, has_style="style" in uploads,
                          iterations=options["iterations"])
                self.jobs[job.id] = job
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self.waiting.put(job)
        return job

    def _check_room(self, session: str) -> None:
        pending = [job.session for job in self.jobs.values() if job.state in ("queued", "running")]
        if len(pending) >= self.limits.max_pending:
            raise QueueFull(f"the queue is full ({len(pending)} jobs waiting or running on this server); "
                            "try again when one has finished")
        mine = pending.count(session)
        if mine >= self.limits.max_pending_per_session:
            raise QueueFull(f"you already have {mine} jobs waiting or running (the limit is "
                            f"{self.limits.max_pending_per_session}); wait for one to finish or stop one")

    def _check_pixels(self, name: str, data: bytes) -> None:
        """Refuse a picture too large to decode from its header alone (a small file can hold a pixel bomb)."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as img:
                    width, height = img.size
        except Image.DecompressionBombError as exc:
            raise ServerError(f"the {name} image is too large to read: {exc}") from None
        except Exception:  # not a picture Pillow knows: decoding says so with the reader's message
            return
        if width * height > self.limits.max_pixels:
            raise ServerError(
                f"the {name} image is {width}×{height} = {width * height:,} pixels, above the limit of "
                f"{self.limits.max_pixels:,} ({self.limits.max_pixels / 1e6:g} megapixels); downscale it first")

    def _check_decodes(self, name: str, path: Path, filename: str) -> None:
        with self.decoding:
            try:
                load_image(path, max_pixels=self.limits.max_pixels)  # a bad upload is refused now
            except StylelabError as exc:
                shown = Path(filename).name[:100] or name
                raise ServerError(f"the {name} file is not usable: {str(exc).replace(str(path), shown)}") from None

    def find(self, job_id: str, session: Session | None) -> Job:
        job = self.jobs.get(job_id)
        if job is None or session is None or not hmac.compare_digest(job.session, session.id):
            raise JobNotFound(f"no job {job_id}")
        return job

    def has_jobs(self, session: str) -> bool:
        return any(job.session == session for job in list(self.jobs.values()))

    def position(self, job: Job) -> int | None:
        """How many jobs run or wait before this one (0 = running next or now)."""
        if job.state != "queued":
            return None
        with self.lock:
            return sum(j.state in ("queued", "running") and j.number < job.number for j in self.jobs.values())

    def stop(self, job: Job) -> None:
        job.stop.set()  # a running job ends at its next progress report
        with self.lock:
            cancelled = job.state == "queued"
            if cancelled:
                job.state, job.finished_at = "cancelled", time.monotonic()
        if cancelled:
            self._drop_uploads(job)

    def expire(self) -> None:
        """Forget finished jobs past their time, or beyond the newest few of their session; remove their files."""
        now = time.monotonic()
        with self.lock:
            finished = sorted((j for j in self.jobs.values() if j.finished_at is not None),
                              key=lambda j: j.finished_at, reverse=True)
            kept: Counter[str] = Counter()
            expired = []
            for job in finished:
                kept[job.session] += 1
                if now - job.finished_at >= self.limits.finished_ttl \
                        or kept[job.session] > self.limits.max_finished_per_session:
                    expired.append(job)
            for job in expired:
                del self.jobs[job.id]
        for job in expired:
            shutil.rmtree(job.folder, ignore_errors=True)

    def close(self, timeout: float = 30.0) -> bool:
        """Stop every job, end the worker and remove the work folder; False if the worker did not end in time.

        A worker left inside torch while the interpreter exits aborts the process, so this must run first.
        """
        with self.lock:
            jobs = list(self.jobs.values())
        for job in jobs:
            self.stop(job)
        self.waiting.put(None)
        self.thread.join(timeout)
        self._remove_workdir()
        atexit.unregister(self._remove_workdir)
        return not self.thread.is_alive()

    def _remove_workdir(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _work(self) -> None:
        while True:
            try:
                job = self.waiting.get(timeout=self.limits.sweep_every)
            except queue.Empty:
                self.expire()
                continue
            if job is None:
                return
            with self.lock:
                if job.state != "queued":  # cancelled while waiting
                    continue
                job.state = "running"
            self._run(job)
            self.expire()

    def _run(self, job: Job) -> None:
        try:
            options = {**job.options, "backbone": self._backbone(job.options["backbone"], job.options["weights"])}
            result = transfer(job.content, job.style if job.has_style else None, device=self.device,
                              callback=lambda e: self._progress(job, e), **options)
            path = job.folder / "result.png"
            tensor_to_pil(result.image).save(path, format="PNG")
            job.result = path
            state = "stopped" if job.stop.is_set() else "done"
            job.message = f"{result.iterations} iterations in {result.seconds:.1f} s on {result.device}"
        except StylelabError as exc:
            state, job.message = "failed", page_wording(str(exc))
        except Exception as exc:  # the server must keep serving whatever one job does
            state, job.message = "failed", f"{type(exc).__name__}: {exc}"
        job.preview = None
        self._drop_uploads(job)
        with self.lock:
            job.state, job.finished_at = state, time.monotonic()

    def _backbone(self, name: str, weights: str) -> Backbone:
        """The built network for (name, weights), loaded once and kept for the next jobs (the worker's own;
        the few most recent kept, so memory stays bounded)."""
        key = (name, weights)
        if key in self.backbones:
            self.backbones.move_to_end(key)
        else:
            self.backbones[key] = create_backbone(name, weights)
            while len(self.backbones) > KEPT_BACKBONES:
                self.backbones.popitem(last=False)
        return self.backbones[key]

    def _progress(self, job: Job, event: ProgressEvent) -> None:
        job.iteration, job.iterations, job.loss = event.iteration, event.iterations, event.loss
        job.its = event.iteration / max(event.elapsed, 1e-9)
        if event.image is not None:
            job.preview = event.image.detach().clamp(0, 1).cpu()
        if job.stop.is_set():
            raise StopOptimization

    @staticmethod
    def _drop_uploads(job: Job) -> None:
        for path in (job.content, job.style):
            path.unlink(missing_ok=True)


# -- wording, weights, hosts ------------------------------------------------------------------------------

# Library messages name options as the command line ("--weights random") or a Python caller ("weights=random")
# writes them; the page has controls instead.
_OPTION = r"(?:--{0}\b|(?<![\w.-]){0}=)"  # "--weights" or "weights="
_PAGE_WORDING = (
    (re.compile(rf",? or pass {_OPTION.format('weights')} ?PATH\b.*?or {_OPTION.format('weights')} ?random\)?"),
     ", or choose Weights: random"),
    (re.compile(rf"lower {_OPTION.format('style[-_]weight')} or {_OPTION.format('content[-_]weight')},"
                r" or check the weights"), "choose other Weights or another Backbone"),
    (re.compile(_OPTION.format("weights") + " ?random"), "Weights: random"),
    (re.compile(r"--(backbone|weights|size|iterations|original-colors|style-text)\b"),
     lambda m: CONTROLS[m[1].replace("-", "_")]),
    (re.compile(r"(?<![\w.-])(backbone|weights|size|iterations|original_colors|style_text)= ?"),
     lambda m: CONTROLS[m[1]] + " "),
)


def page_wording(message: str) -> str:
    """A library message in terms of the page's controls (no CLI flags)."""
    for pattern, replacement in _PAGE_WORDING:
        message = pattern.sub(replacement, message)
    return message


# Pretrained weights per backbone: the label the page shows, and for CLIP the open_clip architecture
# (its files come from the Hugging Face cache, VGG19's from torch.hub's).
_BACKBONE_WEIGHTS = {"vgg19": ("VGG19", None), "clip-rn50": ("CLIP RN50", "RN50"),
                     "clip-rn50-sequential": ("CLIP RN50", "RN50"),
                     "clip-vit-b16": ("CLIP ViT-B/16", "ViT-B-16-quickgelu")}
_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def pretrained_weights_cached(backbone: str) -> bool:
    """Whether this machine already holds ``backbone``'s pretrained weights; never touches the network."""
    try:
        if backbone == "vgg19":
            from torchvision.models import VGG19_Weights

            return (hub_checkpoint_dir() / os.path.basename(VGG19_Weights.IMAGENET1K_V1.url)).is_file()
        arch = _BACKBONE_WEIGHTS.get(backbone, ("", None))[1]
        if arch is None:
            return False
        import open_clip
        from huggingface_hub import try_to_load_from_cache

        repo = open_clip.get_pretrained_cfg(arch, "openai").get("hf_hub", "").strip("/")
        return bool(repo) and any(isinstance(try_to_load_from_cache(repo, f), str) for f in _CLIP_FILES)
    except Exception:  # no answer means: do not offer pretrained by default
        return False


def backbone_choices(names: Iterable[str]) -> list[dict]:
    """Per backbone: whether pretrained weights are on this machine, and if not, what the page says."""
    choices = []
    for name in names:
        label = _BACKBONE_WEIGHTS.get(name, (name, None))[0]
        cached = pretrained_weights_cached(name)
        note = "" if cached else \
            f"pretrained {label} weights are not on this machine: using random weights (texture only)"
        choices.append({"name": name, "pretrained_cached": cached, "note": note})
    return choices


def split_host(value: str) -> tuple[str, int | None] | None:
    """'Name:8000', '[::1]:8000', 'name' -> ('name', 8000 | None), lower-case without brackets; None if malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:]
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    else:  # no port, or a bare IPv6 address
        host, port_text = value, ""
    host = host.rstrip(".")
    if not host or (port_text and not port_text.isdigit()):
        return None
    return host, int(port_text) if port_text else None


def host_allowed(host_header: str, allowed: Iterable[str]) -> bool:
    """Is ``host_header`` one of ``allowed`` ('name' for any port, 'name:port' for one)? Port 80 if none."""
    parsed = split_host(host_header)
    if parsed is None:
        return False
    name, port = parsed[0], parsed[1] or 80
    for entry in allowed:
        allowed_name, allowed_port = split_host(entry) or ("", None)
        if name == allowed_name and allowed_port in (None, port):
            return True
    return False


def _host_port(name: str, port: int) -> str:
    return f"[{name}]:{port}" if ":" in name else f"{name}:{port}"


def is_loopback(host: str) -> bool:
    try:
        return host in LOOPBACK_NAMES or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bound_host_names(host: str, port: int, extra: Sequence[str] = ()) -> list[str]:
    """The Host headers a server bound to ``host``:``port`` answers: the bound name, the loopback names
    for loopback and wildcard binds, this machine's name and addresses for wildcard binds, and ``extra``."""
    names = [host]
    if is_loopback(host) or host in WILDCARD_HOSTS:
        names += LOOPBACK_NAMES
    if host in WILDCARD_HOSTS:
        try:
            hostname, aliases, addresses = socket.gethostbyname_ex(socket.gethostname())
            names += [hostname, *aliases, *addresses]
        except OSError:  # no resolvable name: --allow-host adds one
            names.append(socket.gethostname())
    names += extra
    unique = dict.fromkeys(n for n in names if n not in WILDCARD_HOSTS)
    return [_host_port(name, port) for name in unique]


def _origin(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None
        return parts.scheme, parts.hostname.rstrip("."), parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # a bad port
        return None


def _same_origin(url: str) -> bool:
    own = _origin(f"{request.scheme}://{request.host}")
    return own is not None and _origin(url) == own


# -- the app ----------------------------------------------------------------------------------------------


def _png(image: torch.Tensor) -> io.BytesIO:
    buffer = io.BytesIO()
    tensor_to_pil(image).save(buffer, format="PNG")
    buffer.seek(0)
    return buffer


def _choice(name: str, default: str, choices: Sequence[str]) -> str:
    value = request.form.get(name, "") or default
    if value not in choices:
        raise ServerError(f"{CONTROLS[name]}: unknown choice {value!r}; choose {', '.join(choices)}")
    return value


def _whole_number(name: str, default: int, low: int, high: int) -> int:
    text = request.form.get(name, "").strip() or str(default)
    try:
        value = int(text)
    except ValueError:
        raise ServerError(f"{CONTROLS[name]} must be a whole number, got {text!r}") from None
    if not low <= value <= high:
        raise ServerError(f"{CONTROLS[name]} must be from {low} to {high}, got {value}")
    return value


def _style_text() -> str | None:
    """The written style, stripped; None when empty."""
    text = request.form.get("style_text", "").strip()
    if len(text) > MAX_STYLE_TEXT:
        raise ServerError(f"{CONTROLS['style_text']} must be at most {MAX_STYLE_TEXT} characters, got {len(text)}")
    return text or None


def job_options(backbones: Sequence[str], limits: ServerLimits) -> dict:
    """The job's options from the form, every one checked now (not when the job runs)."""
    size = _whole_number("size", 384, limits.min_size, limits.max_size)
    iterations = _whole_number("iterations", 300, 1, limits.max_iterations)
    if size * size * iterations > limits.work_budget:
        most = limits.work_budget // (size * size)
        raise ServerError(
            f"Size {size} × Iterations {iterations} is more work than this server takes for one job "
            f"(at Size {size}: at most {most} Iterations); lower Size or Iterations")
    return {"backbone": _choice("backbone", "vgg19", backbones), "weights": _choice("weights", "pretrained",
            WEIGHT_CHOICES), "size": size, "iterations": iterations,
            "original_colors": _choice("original_colors", "none", ORIGINAL_COLORS), "style_text": _style_text()}


def create_app(device: str = "auto", allowed_hosts: Sequence[str] | None = None,
               limits: ServerLimits | None = None) -> Flask:
    """The Flask app. ``allowed_hosts``: the Host headers it answers ('name' = any port, 'name:port');
    default localhost and 127.0.0.1. ``serve`` sets ``app.config["ALLOWED_HOSTS"]`` once it knows its port."""
    limits = limits or ServerLimits()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_BYTES
    app.config["ALLOWED_HOSTS"] = list(allowed_hosts or DEFAULT_ALLOWED_HOSTS)
    runner = JobRunner(device, limits)
    sessions = Sessions(limits.max_sessions, has_jobs=runner.has_jobs)
    app.config["runner"], app.config["sessions"] = runner, sessions
    page = resources.files("stylelab").joinpath("web/index.html").read_text()
    backbones = [entry.name for entry in list_backbones()]

    def cookie_name() -> str:
        # Cookies ignore ports: one name per port keeps two servers on one machine from trading sessions.
        port = (split_host(request.host) or ("", None))[1]
        return f"stylelab-session-{port}" if port else "stylelab-session"

    def current_session() -> Session | None:
        return sessions.get(request.cookies.get(cookie_name()))

    def with_session(response: Response, session: Session) -> Response:
        response.set_cookie(cookie_name(), session.id, httponly=True, samesite="Strict", path="/")
        response.headers["Cache-Control"] = "no-store"  # it carries the CSRF token
        return response

    @app.before_request
    def guard():
        if not host_allowed(request.host, app.config["ALLOWED_HOSTS"]):
            # DNS rebinding: another site's name pointed at this machine. That site can read this answer,
            # so it does not list the names that work (the startup log does).
            return jsonify(error=f"unknown host {request.host!r}: this server answers only to the host names "
                                 "it was started for (stylelab serve --allow-host NAME adds one)"), 400
        runner.expire()
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return None
        origin = request.headers.get("Origin")
        if origin is not None:
            if not _same_origin(origin):
                raise Forbidden(f"cross-origin request refused (from {origin})")
        elif request.referrer and not _same_origin(request.referrer):
            raise Forbidden("cross-origin request refused (referred by another site)")
        session = current_session()
        if session is None:
            raise Forbidden("no session: reload the page")
        if not hmac.compare_digest(request.headers.get(CSRF_HEADER, ""), session.csrf_token):
            raise Forbidden(f"missing or wrong CSRF token ({CSRF_HEADER} header): reload the page")
        return None

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", BASE_CSP)
        for name, value in SECURITY_HEADERS.items():
            response.headers[name] = value
        return response

    @app.errorhandler(StylelabError)
    def user_error(exc):
        return jsonify(error=str(exc)), getattr(exc, "status", 400)

    @app.errorhandler(413)
    def too_large(exc):
        return jsonify(error=f"upload too large (limit {MAX_UPLOAD_BYTES // 2**20} MB)"), 413

    @app.get("/")
    def index():
        session = current_session() or sessions.create()
        nonce = secrets.token_urlsafe(16)
        html = page.replace("{{nonce}}", nonce).replace("{{csrf_token}}", session.csrf_token)
        response = Response(html, mimetype="text/html")
        response.headers["Content-Security-Policy"] = \
            f"{BASE_CSP}; script-src 'nonce-{nonce}'; style-src 'self' 'nonce-{nonce}'"
        return with_session(response, session)

    @app.get("/api/session")
    def get_session():
        """For scripts: the session cookie and the token its POSTs must send."""
        session = current_session() or sessions.create()
        return with_session(jsonify(csrf_token=session.csrf_token, csrf_header=CSRF_HEADER), session)

    @app.get("/api/backbones")
    def get_backbones():
        return jsonify(backbones=backbone_choices(backbones), default="vgg19")

    @app.post("/api/jobs")
    def post_job():
        session = current_session()  # the guard made sure there is one
        options = job_options(backbones, limits)
        files = {name: f for name in ("content", "style") if (f := request.files.get(name)) and f.filename}
        needed = ("content",) if options["style_text"] else ("content", "style")  # a written style: no image needed
        missing = [name for name in needed if name not in files]
        if missing:
            or_text = f" or write a {CONTROLS['style_text']}" if "style" in missing else ""
            raise ServerError(f"choose a {' and a '.join(CONTROLS[name] for name in missing)}{or_text}")
        uploads = {name: (f.read(), f.filename or name) for name, f in files.items()}
        job = runner.submit(session.id, uploads, options)
        return jsonify(job.status(runner.position(job))), 202

    @app.get("/api/jobs/<job_id>")
    def get_job(job_id):
        job = runner.find(job_id, current_session())
        return jsonify(job.status(runner.position(job)))

    @app.post("/api/jobs/<job_id>/stop")
    def stop_job(job_id):
        job = runner.find(job_id, current_session())
        runner.stop(job)
        return jsonify(job.status(runner.position(job)))

    @app.get("/api/jobs/<job_id>/preview.png")
    def preview(job_id):
        job = runner.find(job_id, current_session())
        image, result = job.preview, job.result
        if result is not None:
            response = send_file(io.BytesIO(_read_result(job_id, result)), mimetype="image/png")
        elif image is not None:
            response = send_file(_png(image), mimetype="image/png")
        else:
            return jsonify(error="no picture yet"), 404
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/api/jobs/<job_id>/result.png")
    def result(job_id):
        job = runner.find(job_id, current_session())
        if job.result is None:
            return jsonify(error=f"job {job_id} has no result ({job.state})"), 409
        return send_file(io.BytesIO(_read_result(job_id, job.result)), mimetype="image/png", as_attachment=True,
                         download_name=f"stylelab-{job_id[:8]}.png")

    return app


def _read_result(job_id: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:  # expired between the lookup and the read
        raise JobNotFound(f"no job {job_id}") from None


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM stops the server the way Ctrl+C does


def serve(host: str = "127.0.0.1", port: int = 8000, device: str = "auto", log=print,
          allow_hosts: Sequence[str] = ()) -> None:
    """Serve until Ctrl+C or SIGTERM: then stop the running job, end the worker, remove the work folder."""
    from werkzeug.serving import make_server

    app = create_app(device)
    runner: JobRunner = app.config["runner"]
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
    try:
        try:
            server = make_server(host, port, app, threaded=True)
        except OSError as exc:
            raise StylelabError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        app.config["ALLOWED_HOSTS"] = bound_host_names(host, server.server_port, allow_hosts)
        # A wildcard bind is opened through loopback here (the page refuses host names it does not know).
        shown = "127.0.0.1" if host in WILDCARD_HOSTS else f"[{host}]" if ":" in host else host
        log(f"stylelab serve: open http://{shown}:{server.server_port}/ (Ctrl+C to stop)")
        if not is_loopback(host):
            log("stylelab serve: listening beyond this machine; anyone who can reach it can run jobs; "
                f"it answers to {', '.join(app.config['ALLOWED_HOSTS'])} (add more with --allow-host)")
        server.serve_forever()  # returns on Ctrl+C: werkzeug swallows the KeyboardInterrupt
        log("stylelab serve: stopping")
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
        if not runner.close():
            log("stylelab serve: the running job did not stop in time")

"""Many machines through Ray: the outputs of a folder run (or of several videos) spread over Ray workers.

Ray schedules; this module only cuts the work into tasks, skips outputs that exist (resume) and makes each
output appear once. A task is a few contents of one pixel size (``batch_size`` at most, optimized together as
in a run without Ray) or one video. Every task writes each of its outputs atomically and never over an
existing file: the image is written under a temporary name in the output's folder, then hard-linked to its
name (which fails if the name exists) — so a task that Ray retries after its worker died writes only what is
still missing, and every output is written exactly once. One task per GPU when the cluster has GPUs, else one
per CPU. ``pip install 'stylelab[ray]'``; the same stylelab must be installed on every machine.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import StylelabError

LOCAL = "local"
RETRIES = 3  # a task whose worker dies is run again elsewhere, up to this many times
PROBE_SECONDS = 3.0
# Test hook: the path of a marker file; the first task that finds it missing makes it and kills its worker.
FAULT_ENV = "STYLELAB_RAY_FAULT_MARKER"


def _ray():
    try:
        import ray
    except ImportError:
        raise StylelabError("--ray needs Ray: pip install 'stylelab[ray]'") from None
    return ray


def _probe(address: str) -> None:
    """Fail within seconds, in one line, when nothing answers at a cluster address (ray.init would wait long)."""
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise StylelabError(f"--ray {address}: give a Ray cluster address as HOST:PORT (e.g. 10.0.0.1:6379), "
                            "or --ray alone for a local Ray")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_SECONDS).close()
    except OSError as exc:
        raise StylelabError(f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one with "
                            "'ray start --head' or check the address") from None


def connect(address: str | None) -> bool:
    """Join Ray: a local one for ``local``/None, else the cluster at ``address``. True if this call started it
    (then the caller shuts it down); a Ray already initialized in this process is used as it is."""
    ray = _ray()
    if address not in (None, LOCAL, "auto"):
        _probe(address)
    if ray.is_initialized():
        return False
    if address in (None, LOCAL):
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    else:
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except Exception as exc:  # ConnectionError, version mismatch, …
            raise StylelabError(f"cannot join the Ray cluster at {address}: {str(exc).splitlines()[0]}") from None
    return True


def _resources(ray) -> dict:
    """One task per GPU when the cluster has GPUs, else one per CPU."""
    return {"num_gpus": 1} if ray.cluster_resources().get("GPU", 0) >= 1 else {"num_cpus": 1}


def _maybe_fail_once() -> None:
    marker = os.environ.get(FAULT_ENV)
    if marker:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
        os._exit(1)  # the worker process dies mid-task, as a crashed or preempted machine would


def write_once(path: Path, write: Callable[[Path], object]) -> bool:
    """``write(tmp)`` to a temporary name next to ``path``, then link it to ``path`` unless ``path`` exists.
    True if this call made ``path``. Readers never see a partial file; an existing file is never replaced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.part{path.suffix}")
    try:
        write(tmp)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: rename, after a last look
            if path.exists():
                return False
            os.replace(tmp, path)
        return True
    finally:
        if tmp.exists():
            tmp.unlink()


def _transfer_task(contents: list[str], outputs: list[str], style, options: dict, bit_depth: int,
                   fault: str | None) -> list[str]:
    """Run on a worker: transfer ``contents`` (one batch) and write each of ``outputs`` once."""
    from .api import transfer
    from .images import save_image

    if fault:
        os.environ[FAULT_ENV] = fault
    per_content = len(outputs) // len(contents)
    made: list[str] = []

    def save(index: int, result) -> None:
        _maybe_fail_once()
        path = Path(outputs[index])
        if write_once(path, lambda tmp: save_image(result.image, tmp, bit_depth)):
            made.append(str(path))

    assert per_content * len(contents) == len(outputs)
    transfer(contents, style, on_result=save, **options)
    return made


def _video_task(video: str, styles: list[str], output: str, options: dict, fault: str | None) -> list[str]:
    from .video.run import plan_video, run_video

    if fault:
        os.environ[FAULT_ENV] = fault
    _maybe_fail_once()
    if Path(output).exists():
        return []
    Path(output).parent.mkdir(parents=True, exist_ok=True)  # the output folder, made by the first video's worker
    plan = plan_video(video, styles, output, **options)
    run_video(plan, quiet=True)
    return [output]


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as img:
        return img.size


def transfer_tasks(contents: Sequence[Path], outputs: Sequence[Path], batch_size: int) -> list[tuple[list, list]]:
    """(contents, outputs) per task: contents whose outputs are all on disk are skipped; the rest go in
    batches of up to ``batch_size`` contents of one pixel size, in order (as a run without Ray batches them)."""
    per_content = len(outputs) // len(contents)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, content in enumerate(contents):
        mine = outputs[i * per_content:(i + 1) * per_content]
        if not all(Path(o).exists() for o in mine):
            groups.setdefault(_image_size(Path(content)), []).append(i)
    tasks = []
    for indices in groups.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            tasks.append(([str(contents[i]) for i in chunk],
                          [str(o) for i in chunk for o in outputs[i * per_content:(i + 1) * per_content]]))
    return tasks


def _gather(ray, refs: list, total: int, skipped: int, quiet: bool, unit: str) -> int:
    """Wait for every task with one progress bar over the outputs; worker errors become one-line errors."""
    from tqdm import tqdm

    bar = tqdm(total=total, initial=skipped, desc="outputs", unit=unit, disable=quiet, file=sys.stderr,
               dynamic_ncols=True)
    sizes = {ref: n for ref, n in refs}
    pending, made = list(sizes), 0
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    made += len(ray.get(ref))
                except ray.exceptions.RayTaskError as exc:
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, StylelabError):
                        raise StylelabError(str(cause)) from None
                    raise StylelabError(f"a Ray task failed: {str(cause or exc).strip().splitlines()[-1]}") from None
                except ray.exceptions.RayError as exc:  # the worker died more often than RETRIES allow
                    raise StylelabError(f"a Ray task failed after {RETRIES} retries: "
                                        f"{str(exc).strip().splitlines()[0]}") from None
                bar.update(sizes[ref])
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        bar.close()
    return made


@contextlib.contextmanager
def _session(address: str | None):
    """Ray joined for one run (``connect``), shut down after it if this run started it."""
    ray = _ray()
    started = connect(address)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def run_transfer(address: str | None, contents: Sequence[Path], style, outputs: Sequence[Path], options: dict, *,
                 batch_size: int, bit_depth: int = 8, quiet: bool = False,
                 info: Callable[[str], None] = lambda m: None) -> int:
    """Stylize ``contents`` on Ray; ``outputs`` are content-major (as ``transfer`` returns them). Returns the
    number of outputs written by this run (those already on disk are skipped)."""
    tasks = transfer_tasks(contents, outputs, batch_size)
    skipped = len(outputs) - sum(len(o) for _, o in tasks)
    if skipped:
        info(f"{skipped} of {len(outputs)} output(s) exist: skipped")
    if not tasks:
        return 0
    with _session(address) as ray:
        remote = ray.remote(max_retries=RETRIES, **_resources(ray))(_transfer_task)
        style = [str(s) for s in style] if isinstance(style, (list, tuple)) else style
        options = {**options, "batch_size": batch_size}
        fault = os.environ.get(FAULT_ENV)
        info(f"{len(tasks)} task(s) on Ray ({_where(ray)})")
        refs = [(remote.remote(c, o, style, options, bit_depth, fault), len(o)) for c, o in tasks]
        return _gather(ray, refs, len(outputs), skipped, quiet, "img")


def run_videos(address: str | None, videos: Sequence[Path], styles: Sequence[Path], outputs: Sequence[Path],
               options: dict, *, quiet: bool = False, info: Callable[[str], None] = lambda m: None) -> int:
    """One Ray task per video whose output is missing; each runs the same resumable frame loop as ``video``."""
    todo = [(v, o) for v, o in zip(videos, outputs) if not Path(o).exists()]
    if len(todo) < len(videos):
        info(f"{len(videos) - len(todo)} of {len(videos)} video(s) exist: skipped")
    if not todo:
        return 0
    with _session(address) as ray:
        remote = ray.remote(max_retries=RETRIES, **_resources(ray))(_video_task)
        fault = os.environ.get(FAULT_ENV)
        info(f"{len(todo)} video(s) on Ray ({_where(ray)})")
        refs = [(remote.remote(str(v), [str(s) for s in styles], str(o), options, fault), 1) for v, o in todo]
        return _gather(ray, refs, len(videos), len(videos) - len(todo), quiet, "video")


def _where(ray) -> str:
    r = ray.cluster_resources()
    nodes = len([n for n in ray.nodes() if n.get("Alive")])
    gpus = int(r.get("GPU", 0))
    return f"{nodes} node(s), " + (f"{gpus} GPU worker(s)" if gpus else f"{int(r.get('CPU', 0))} CPU worker(s)")

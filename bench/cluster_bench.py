"""Dask cluster benchmark: CPU seconds the client spends per extra clip.

Starts a real scheduler and workers with the ``dask`` command line on loopback,
runs ``python -m extract --backend dask --scheduler ADDRESS`` over a few and over
many distinct clips (crops kept), and reports the client's marginal CPU seconds per
clip, (CPU for many - CPU for few) / (many - few), next to the wall seconds. The
workers decode, detect, compute audio and embed; the client should only hash,
receive and write. Target: at most 0.05 CPU-s per clip.

Run: ``python -m bench.cluster_bench --out bench-out/cluster.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.extract_bench import distinct_copies, extract_command
from extract.synthetic import talking_head_clip

FEW, MANY = 4, 20  # clips in the two runs whose difference gives the marginal cost
CLIENT_CPU_TARGET = 0.05  # CPU seconds per extra clip the client may spend (issue target)
WORKERS = 2  # worker processes, one thread each: one per core of this machine
SCHEDULER_START_SECONDS = 120  # a scheduler starts in seconds; this much means it never will
LOG_TAIL = 2000  # characters of the scheduler's log shown when it does not start


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def client_run(folder: Path, cache_dir: Path, address: str) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one ``python -m extract`` client over ``folder``."""
    shutil.rmtree(cache_dir, ignore_errors=True)
    command = extract_command(folder, cache_dir, "--backend", "dask", "--scheduler", address)
    cpu_before, start = _children_cpu_seconds(), time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, timeout=3600)
    return _children_cpu_seconds() - cpu_before, time.perf_counter() - start


@contextlib.contextmanager
def loopback_cluster(folder: Path, workers: int, environment: dict[str, str] | None = None) -> Iterator[str]:
    """A scheduler and ``workers`` one-thread workers on 127.0.0.1, started with the ``dask`` command line.

    Parameters
    ----------
    folder : Path
        Receives the scheduler file and the logs, ``scheduler.log`` and ``workers.log``.
    workers : int
        Worker processes.
    environment : dict, optional
        Environment of the worker processes; by default this process's.

    Yields
    ------
    str
        The scheduler's address; every process is stopped on exit.

    Raises
    ------
    RuntimeError
        When the scheduler does not start, with the end of its log.
    """
    dask_command = str(Path(sys.executable).parent / "dask")
    scheduler_file = folder / "scheduler.json"
    processes: list[subprocess.Popen] = []
    with contextlib.ExitStack() as logs:

        def start(command: list[str], log_name: str, process_environment: dict[str, str] | None = None) -> None:
            log = logs.enter_context((folder / log_name).open("w"))
            processes.append(
                subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, env=process_environment, start_new_session=True
                )
            )

        try:
            start(
                [
                    dask_command,
                    "scheduler",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--no-dashboard",
                    "--scheduler-file",
                    str(scheduler_file),
                ],
                "scheduler.log",
            )
            deadline = time.monotonic() + SCHEDULER_START_SECONDS
            while not scheduler_file.exists():
                if time.monotonic() > deadline:
                    log = (folder / "scheduler.log").read_text()[-LOG_TAIL:]
                    raise RuntimeError(f"the dask scheduler did not start within {SCHEDULER_START_SECONDS} s:\n{log}")
                time.sleep(0.1)
            address = json.loads(scheduler_file.read_text())["address"]
            start(
                [
                    dask_command,
                    "worker",
                    address,
                    "--nworkers",
                    str(workers),
                    "--nthreads",
                    "1",
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                ],
                "workers.log",
                environment,
            )
            yield address
        finally:
            # Each process leads its own session, so that its children (the worker processes) stop with it.
            for process in processes:
                os.killpg(process.pid, signal.SIGTERM)
            for process in processes:
                process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out/cluster.json"))
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="traitcache-cluster-") as folder:
        scratch = Path(folder)
        clip = talking_head_clip(scratch / "clip.mp4", seconds=15.0, width=1280, height=720, fps=30)
        # One thread per worker process; TensorFlow in each uses one core, as the workers share the machine.
        environment = {**os.environ, "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
        with loopback_cluster(scratch, WORKERS, environment) as address:
            few_folder, many_folder = (
                distinct_copies(clip, FEW, scratch / "few"),
                distinct_copies(clip, MANY, scratch / "many"),
            )
            client_run(few_folder, scratch / "warm-up", address)  # workers build their ResNet50 once
            few_cpu, few_wall = client_run(few_folder, scratch / "cache", address)
            many_cpu, many_wall = client_run(many_folder, scratch / "cache", address)
    report = {
        "workers": WORKERS,
        "clips": {"few": FEW, "many": MANY},
        "client_cpu_seconds": {"few": few_cpu, "many": many_cpu},
        "wall_seconds": {"few": few_wall, "many": many_wall},
        "client_cpu_per_extra_clip": (many_cpu - few_cpu) / (MANY - FEW),
        "wall_per_extra_clip": (many_wall - few_wall) / (MANY - FEW),
        "target_client_cpu_per_clip": CLIENT_CPU_TARGET,
    }
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(report, indent=1))
    print(
        f"client CPU per extra clip: {report['client_cpu_per_extra_clip']:.3f} s (target {CLIENT_CPU_TARGET} s); wall per extra clip: {report['wall_per_extra_clip']:.2f} s with {WORKERS} workers"
    )
    print(f"wrote {arguments.out}")


if __name__ == "__main__":
    main()

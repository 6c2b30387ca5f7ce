"""Test helper: an app run in two worker processes on 127.0.0.1 (multi_worker)."""

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class Worker:
    """One finished worker process: its TF_CONFIG, exit code and output."""

    tf_config: str
    returncode: int
    log: str


def free_ports(count: int) -> list[int]:
    """`count` distinct ports on 127.0.0.1 that were free a moment ago."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_workers(module, argv, folder, *, count=2, timeout=150.0) -> list[Worker]:
    """Runs `python -m module *argv` as `count` workers of one cluster.

    Each worker's output goes to a file in `folder` (a pipe could fill while
    the test waits on another worker, and stall both); its TMPDIR is
    `folder/temp`, so a test sees what the other workers leave there. All
    of them get `timeout` seconds together; on a timeout or any failure of
    the test every process still running is killed.

    Raises:
      AssertionError: when the workers have not all ended in time (with the
        end of each one's output).
    """
    folder = Path(folder)
    (folder / "temp").mkdir(parents=True, exist_ok=True)
    ports = free_ports(count)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes, configs, logs = [], [], []
    deadline = time.monotonic() + timeout
    try:
        for index in range(count):
            configs.append(
                json.dumps(
                    {"cluster": cluster, "task": {"type": "worker", "index": index}}
                )
            )
            env = dict(os.environ, TF_CONFIG=configs[-1], TMPDIR=str(folder / "temp"))
            logs.append(folder / f"worker{index}.log")
            with open(logs[-1], "w") as log:
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", module, *argv],
                        cwd=ROOT,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        for process in processes:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill(processes)
        tails = "\n".join(f"--- {log.name}:\n{log.read_text()[-2000:]}" for log in logs)
        raise AssertionError(f"the workers ran over {timeout} s\n{tails}") from None
    finally:
        _kill(processes)
    return [
        Worker(config, process.returncode, log.read_text())
        for config, process, log in zip(configs, processes, logs, strict=True)
    ]


def _kill(processes) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()

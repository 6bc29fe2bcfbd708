"""Pytest plugin: a real Arize Phoenix OTLP backend on 127.0.0.1 (BACKENDS.md §2).

The session fixture ``phoenix`` is self-contained, so the plain test command needs no hidden step:

1. it finds (or creates, ~65 s, once) a cached venv with ``arize-phoenix==20.26.1`` at
   ``$TRACEDLLM_PHOENIX_VENV`` (default ``~/.cache/tracedllm/phoenix-20.26.1``);
2. it starts ``phoenix serve`` with the five containment variables of BACKENDS.md §2.2 (loopback
   HTTP bind, in-memory SQLite, no telemetry, no external resources, no agent assistant) on free
   ports, waits for ``/healthz`` (bounded, 90 s) and yields the endpoints;
3. it stops the server by PID on teardown.

When Phoenix cannot be installed or started, tests using the fixture are skipped with the reason,
except under ``CI=true``, where that is a failure. Progress (each step with its time, and pip's
``Collecting``/``Installing`` lines while the venv is built) is written to the terminal, past
pytest's output capture, and logged (logger ``tracedllm.tests.phoenix``).

Loaded by the root ``conftest.py`` (``pytest_plugins``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn

import pytest

PHOENIX_VERSION = "20.26.1"
INSTALL_TIMEOUT = 900.0
HEALTH_TIMEOUT = 90.0
_MARKER = ".tracedllm-phoenix-ok"
_log = logging.getLogger("tracedllm.tests.phoenix")
# pip's lines worth showing while it works (it prints no progress bars to a pipe)
_PIP_PROGRESS = ("Collecting", "Installing", "Successfully", "ERROR")
_QUIET_NOTE = 15.0  # seconds without a shown line after which a "still running" line is shown

Say = Callable[[str], None]

# BACKENDS.md §2.2: all five are needed for zero non-loopback traffic.
CONTAINMENT_ENV = {
    "PHOENIX_HOST": "127.0.0.1",
    "PHOENIX_SQL_DATABASE_URL": "sqlite:///:memory:",
    "PHOENIX_TELEMETRY_ENABLED": "false",
    "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
    "PHOENIX_DISABLE_AGENT_ASSISTANT": "true",
}


@dataclass(frozen=True)
class Phoenix:
    """A running Phoenix server.

    Attributes:
        base_url: ``http://127.0.0.1:<port>`` (UI, REST ``/v1/...``, OTLP/HTTP, ``/healthz``).
        http_traces_endpoint: The OTLP/HTTP traces URL, ``<base_url>/v1/traces``.
        grpc_endpoint: The OTLP/gRPC endpoint, ``http://127.0.0.1:<grpc_port>`` (insecure).
        pid: Process id of ``phoenix serve``.
        log_path: File receiving the server's stdout and stderr.
    """

    base_url: str
    http_traces_endpoint: str
    grpc_endpoint: str
    pid: int
    log_path: Path

    def get_json(self, path: str, timeout: float = 5.0) -> Any:
        """GET ``base_url + path`` and decode the JSON body."""
        with urllib.request.urlopen(self.base_url + path, timeout=timeout) as resp:
            return json.load(resp)


def _unavailable(reason: str) -> NoReturn:
    """Skip, or fail under ``CI=true`` (a missing backend in CI is a failure, BACKENDS.md §1)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"Phoenix backend unavailable under CI=true: {reason}", pytrace=False)
    pytest.skip(f"Phoenix backend unavailable: {reason}")


def venv_dir() -> Path:
    """The cached Phoenix venv location."""
    default = Path.home() / ".cache" / "tracedllm" / f"phoenix-{PHOENIX_VERSION}"
    return Path(os.environ.get("TRACEDLLM_PHOENIX_VENV") or default).expanduser()


def _tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def terminal(config: pytest.Config) -> Say:
    """A function that logs a progress line and writes it to the terminal.

    Pytest captures what fixtures print; like its live logging, this suspends the capture for
    the line (the capture manager) and writes through the terminal reporter. Without them (as a
    plain library), the line goes to the process's original stderr.
    """
    capture = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")

    def say(message: str) -> None:
        _log.info("%s", message)
        line = f"[phoenix backend] {message}"
        if capture is None or reporter is None:
            print(line, file=sys.__stderr__, flush=True)
            return
        with capture.global_and_fixture_disabled():
            if getattr(reporter._tw, "width_of_current_line", 0):  # after -q's progress dots
                reporter.write("\n")
            reporter.write_line(line)
            reporter.flush()

    return say


def _run_shown(cmd: list[str], log: IO[bytes], say: Say) -> int:
    """Run ``cmd`` (bounded by `INSTALL_TIMEOUT`), its output to ``log``; return its exit code.

    Its `_PIP_PROGRESS` lines are also said as they come, and after `_QUIET_NOTE` seconds without
    one, that it is still running.

    Raises:
        subprocess.TimeoutExpired: If it ran longer than `INSTALL_TIMEOUT` (it is killed).
    """
    started = time.monotonic()
    lines: queue.Queue[bytes | None] = queue.Queue()
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        out = proc.stdout
        assert out is not None

        def pump() -> None:
            for raw in out:
                lines.put(raw)
            lines.put(None)

        threading.Thread(target=pump, name="pip output", daemon=True).start()
        shown = started
        while True:
            now = time.monotonic()
            if now - started > INSTALL_TIMEOUT:
                proc.kill()
                raise subprocess.TimeoutExpired(cmd, INSTALL_TIMEOUT)
            try:
                raw = lines.get(timeout=1.0)
            except queue.Empty:
                if now - shown >= _QUIET_NOTE:
                    say(f"  ... still running ({now - started:.0f} s)")
                    shown = now
                continue
            if raw is None:
                return proc.wait()
            log.write(raw)
            log.flush()
            text = raw.decode(errors="replace").strip()
            if text.startswith(_PIP_PROGRESS):
                text = text.split(" (from ", 1)[0]  # "Collecting x (from y)": who needs it
                say(f"  {time.monotonic() - started:5.0f} s  {text[:100]}")
                shown = time.monotonic()


def ensure_phoenix_venv(venv: Path, say: Say = _log.info) -> Path:
    """Return the ``phoenix`` executable of ``venv``, creating the venv first if needed.

    A marker file written after a successful install tells a complete venv from an interrupted
    one (which is wiped and rebuilt). A lock file serialises concurrent sessions. Each step, and
    pip's progress, is said through ``say``.

    Raises:
        RuntimeError: If the venv cannot be created or the package cannot be installed.
    """
    exe = venv / "bin" / "phoenix"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another session to finish with {venv} (lock {lock.name})")
            waited = time.monotonic()
            fcntl.flock(lock, fcntl.LOCK_EX)
            say(f"got the lock after {time.monotonic() - waited:.1f} s")
        marker = venv / _MARKER
        if exe.exists() and marker.exists() and marker.read_text().strip() == PHOENIX_VERSION:
            return exe
        if venv.exists():
            say(f"removing incomplete Phoenix venv {venv}")
            shutil.rmtree(venv)
        log_path = venv.parent / f"{venv.name}-install.log"
        say(
            f"first run: installing arize-phoenix=={PHOENIX_VERSION} into {venv}, once "
            f"(a few minutes; full log: {log_path})"
        )
        started = time.monotonic()
        base_python = getattr(sys, "_base_executable", None) or sys.executable
        with open(log_path, "wb") as log:
            steps = [
                [base_python, "-m", "venv", str(venv)],
                [
                    str(venv / "bin" / "python"),
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    f"arize-phoenix=={PHOENIX_VERSION}",
                ],
            ]
            for step, cmd in zip(("creating the venv", "pip install"), steps, strict=True):
                say(f"{step} ...")
                step_started = time.monotonic()
                try:
                    rc = _run_shown(cmd, log, say)
                except (OSError, subprocess.TimeoutExpired) as exc:
                    raise RuntimeError(f"{cmd[:3]} failed: {exc!r}") from exc
                if rc != 0:
                    raise RuntimeError(
                        f"{' '.join(cmd[-2:])} exited {rc}; tail of {log_path}:\n{_tail(log_path)}"
                    )
                say(f"{step}: done in {time.monotonic() - step_started:.1f} s")
        if not exe.exists():
            raise RuntimeError(f"{exe} missing after install")
        (venv / _MARKER).write_text(PHOENIX_VERSION + "\n")
        say(f"Phoenix venv ready in {time.monotonic() - started:.1f} s")
        return exe


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free right now on ``host`` (``""`` = all IPv4 interfaces)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _grpc_port() -> int:
    """A free port for the gRPC listener, which Phoenix binds on ``[::]`` (all interfaces)."""
    for _ in range(20):
        port = free_port("")
        with contextlib.suppress(OSError), socket.socket(socket.AF_INET6) as sock6:
            sock6.bind(("::", port))
            return port
    return free_port("")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server by its PID: SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def start_phoenix(
    exe: Path, workdir: Path, say: Say = _log.info
) -> tuple[Phoenix, subprocess.Popen[bytes]]:
    """Start ``phoenix serve`` contained on loopback and wait (bounded) for ``/healthz``.

    Raises:
        RuntimeError: If the server exits or is not healthy within `HEALTH_TIMEOUT`.
    """
    port, grpc_port = free_port(), _grpc_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PHOENIX_"))}
    for key in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(key, None)
    env.update(CONTAINMENT_ENV)
    env.update(
        PHOENIX_PORT=str(port),
        PHOENIX_GRPC_PORT=str(grpc_port),
        PHOENIX_WORKING_DIR=str(workdir / "data"),
    )
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    log_path = workdir / "phoenix.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(exe), "serve"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=workdir,
        )
    base = f"http://127.0.0.1:{port}"
    say(f"started phoenix serve (pid {proc.pid}, log {log_path}); waiting for it to be healthy")
    deadline = time.monotonic() + HEALTH_TIMEOUT
    started = time.monotonic()
    while not _healthy(base + "/healthz"):
        if proc.poll() is not None:
            raise RuntimeError(f"phoenix exited {proc.returncode}:\n{_tail(log_path)}")
        if time.monotonic() > deadline:
            _stop(proc)
            raise RuntimeError(
                f"phoenix not healthy after {HEALTH_TIMEOUT:.0f} s:\n{_tail(log_path)}"
            )
        time.sleep(0.2)
    say(f"phoenix healthy after {time.monotonic() - started:.1f} s")
    info = Phoenix(
        base_url=base,
        http_traces_endpoint=f"{base}/v1/traces",
        grpc_endpoint=f"http://127.0.0.1:{grpc_port}",
        pid=proc.pid,
        log_path=log_path,
    )
    return info, proc


@pytest.fixture(scope="session")
def phoenix(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[Phoenix]:
    """A running, contained Phoenix server for the whole session (see the module docstring)."""
    say = terminal(pytestconfig)
    try:
        exe = ensure_phoenix_venv(venv_dir(), say)
    except (RuntimeError, OSError) as exc:
        _unavailable(f"cannot install arize-phoenix=={PHOENIX_VERSION}: {exc}")
    workdir = tmp_path_factory.mktemp("phoenix")
    try:
        info, proc = start_phoenix(exe, workdir, say)
    except (RuntimeError, OSError) as exc:
        _unavailable(f"cannot start phoenix: {exc}")
    try:
        yield info
    finally:
        _stop(proc)


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker (also declared in pyproject.toml) for sessions loading this plugin."""
    config.addinivalue_line("markers", "otlp_backend: needs a real OTLP backend (Arize Phoenix)")

"""Signals: SIGINT, SIGTERM and SIGKILL of a running ``caloforge`` leave no debris and no orphaned process.

The kill tests start the real command in its own process group and check the exit status, the one line on
stderr, the files left and the processes left (the whole group, workers included).
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from caloforge import atomic
from caloforge.atomic import Interrupted, PartialFileBusyError, partial_path, write_text_atomic

# a pytest run in the background starts its children with SIGINT ignored, which the command rightly keeps
BOOT = ("import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from caloforge.cli.main import app; app()")
CORES = len(os.sched_getaffinity(0))


def _start(*args: str, cwd: Path) -> subprocess.Popen:
    """``caloforge ARGS`` in a new session (its process group: the PID)."""
    return subprocess.Popen(
        [sys.executable, "-c", BOOT, *args], cwd=cwd, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _stat(pid: int | str) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state, ppid, pgrp, ...), None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _group(pgid: int) -> list[int]:
    """Living processes (zombies excluded) of a process group."""
    pids = []
    for entry in Path("/proc").iterdir():
        fields = _stat(entry.name) if entry.name.isdigit() else None
        if fields and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            pids.append(int(entry.name))
    return pids


def _workers(parent: int) -> list[int]:
    """The multiprocessing workers started by ``parent`` (the resource tracker excluded)."""
    found = []
    for pid in _group(parent):
        fields = _stat(pid)
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if fields and int(fields[1]) == parent and b"spawn_main" in cmd:
            found.append(pid)
    return found


def _wait_until(condition, timeout_s: float, step_s: float = 0.05) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(step_s)
    return bool(condition())


def _finish(proc: subprocess.Popen, *, notes: bool = False) -> tuple[int, list[str]]:
    """Exit status and the lines on stderr (the notes about the worker count only if ``notes``); no process of
    the group may be left."""
    _, err = proc.communicate(timeout=60)
    assert _wait_until(lambda: not _group(proc.pid), 10), f"left running: {_group(proc.pid)}"
    return proc.returncode, [line for line in err.splitlines() if notes or not line.startswith("note: ")]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ atomic writes (no process needed)


def test_a_stale_partial_file_is_named_and_replaced(tmp_path, caplog):
    target = tmp_path / "x.txt"
    stale = partial_path(target)
    stale.write_text("half of an earlier run")
    with caplog.at_level(logging.WARNING, logger="caloforge.atomic"):
        write_text_atomic(target, "whole")
    assert target.read_text() == "whole" and not stale.exists()
    assert f"removing stale {stale} from an earlier run that was killed" in caplog.text


def test_a_partial_file_that_a_running_process_writes_is_left_alone(tmp_path):
    target = tmp_path / "x.h5"
    busy = partial_path(target)
    with open(busy, "w") as held:  # as another run writing the same output holds it
        held.write("being written")
        held.flush()
        with pytest.raises(PartialFileBusyError, match=f"{busy} is being written by process {os.getpid()}"):
            write_text_atomic(target, "mine")
    assert busy.read_text() == "being written" and not target.exists()


def test_a_stop_request_lost_in_a_finaliser_still_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "x.txt"
    target.write_text("old")
    monkeypatch.setattr(atomic, "_stop_signal", signal.SIGTERM)  # as if its KeyboardInterrupt had been dropped
    with pytest.raises(Interrupted) as info:
        write_text_atomic(target, "new")
    assert info.value.signum == signal.SIGTERM
    assert target.read_text() == "old" and not partial_path(target).exists()


# ------------------------------------------------------------------ kill tests of the command


def test_sigterm_stops_simulate_with_a_message_and_removes_its_partial_file(tmp_path):
    out = tmp_path / "hits.root"
    proc = _start("simulate", "--gun", "gamma", "-n", "200000", "-o", str(out), cwd=tmp_path)
    assert _wait_until(lambda: partial_path(out).exists() or proc.poll() is not None, 60)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    code, lines = _finish(proc)
    assert code == 128 + signal.SIGTERM
    assert lines == ["stopped by SIGTERM: nothing was written"]
    assert list(tmp_path.iterdir()) == []


FULLSIM = ("fullsim", "--momentum", "1", "--seed", "7", "--quiet", "--workers", "2", "-n", "300")
"""A run of 1 GeV/c photons, the gun of conftest's ``photon_sample`` (so that it can be appended to)."""


@pytest.mark.geant4
def test_sigterm_stops_fullsim_and_its_workers(tmp_path):
    out = tmp_path / "gamma.h5"
    proc = _start(*FULLSIM, str(out), cwd=tmp_path)
    assert _wait_until(lambda: len(_workers(proc.pid)) == min(2, CORES) and partial_path(out).exists(), 30)
    proc.send_signal(signal.SIGTERM)  # the parent only: it must stop its workers itself
    code, lines = _finish(proc)
    assert code == 128 + signal.SIGTERM
    assert lines == ["stopped by SIGTERM: nothing was written"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.geant4
def test_workers_die_with_a_killed_parent_and_the_next_run_replaces_its_partial_file(tmp_path):
    out = tmp_path / "gamma.h5"
    proc = _start(*FULLSIM, str(out), cwd=tmp_path)
    assert _wait_until(lambda: len(_workers(proc.pid)) == min(2, CORES) and partial_path(out).exists(), 30)
    proc.kill()
    proc.communicate(timeout=10)
    assert _wait_until(lambda: not _group(proc.pid), 10), f"orphans: {_group(proc.pid)}"
    assert partial_path(out).exists() and not out.exists()

    # far more workers than cores and events: one worker process for the one event
    again = _start("fullsim", str(out), "-n", "1", "--workers", "64", "--track", "0.32,0.73,0.01", "--quiet",
                   cwd=tmp_path)
    most = 0
    while again.poll() is None:
        most = max(most, len(_workers(again.pid)))
        time.sleep(0.05)
    code, lines = _finish(again, notes=True)
    assert code == 0, lines
    assert f"removing stale {partial_path(out)} from an earlier run that was killed" in lines
    assert f"note: 64 worker processes asked for, {CORES} cores to run on: using {CORES}" in lines
    assert most == 1
    assert not partial_path(out).exists() and out.exists()


@pytest.mark.geant4
def test_ctrl_c_during_an_append_always_stops_it_and_leaves_the_file_as_it_was(tmp_path, photon_sample):
    target = tmp_path / "gamma.h5"
    target.write_bytes(photon_sample.read_bytes())
    before = _digest(target)
    for delay_s in (0.3, 0.6, 1.2, 2.5, 4.0):  # reading the command line, imports, worker start-up, Geant4 events
        proc = _start(*FULLSIM, "--append", str(target), cwd=tmp_path)
        time.sleep(delay_s)
        os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the parent and its workers
        code, lines = _finish(proc)
        assert (code, lines) == (130, ["interrupted: nothing was written"]), delay_s
        assert _digest(target) == before and not partial_path(target).exists(), delay_s

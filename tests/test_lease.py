"""The one-driver lease, on real files and processes: refused while live, taken over once its
holder is gone (dead on this host, or silent past the timeout), renewed, released."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from mothray import lease
from mothray.lease import LEASE_NAME, LeaseHeld


def write_holder(directory, **fields) -> None:
    """A lease as another driver would have left it."""
    holder = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": "2026-01-01T00:00:00+00:00",
        "renewed": "2026-01-01T00:00:00+00:00",
        "renewed_unix": time.time(),
        "token": "theirs",
    }
    (directory / LEASE_NAME).write_text(json.dumps({**holder, **fields}))


def dead_pid() -> int:
    """The pid of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_live_lease_refuses_a_second_driver_naming_the_first(tmp_path):
    with lease.lease(str(tmp_path)):
        holder = json.loads((tmp_path / LEASE_NAME).read_text())
        assert (holder["host"], holder["pid"]) == (socket.gethostname(), os.getpid())
        refusal = f"another driver runs this experiment: pid {os.getpid()}"
        with pytest.raises(LeaseHeld, match=refusal):
            with lease.lease(str(tmp_path)):
                pass
        assert json.loads((tmp_path / LEASE_NAME).read_text())["token"] == holder["token"]
    assert not (tmp_path / LEASE_NAME).exists()  # released


def test_a_lease_of_a_dead_process_on_this_host_is_taken_over(tmp_path):
    write_holder(tmp_path, pid=dead_pid())
    with lease.lease(str(tmp_path)):
        assert json.loads((tmp_path / LEASE_NAME).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LEASE_NAME).exists()


def test_another_hosts_lease_counts_until_it_is_not_renewed(tmp_path):
    write_holder(tmp_path, host="elsewhere", pid=1)
    with pytest.raises(LeaseHeld, match="pid 1 on elsewhere"):
        with lease.lease(str(tmp_path)):
            pass
    write_holder(tmp_path, host="elsewhere", pid=1, renewed_unix=time.time() - lease.TIMEOUT_S - 1)
    with lease.lease(str(tmp_path)):
        assert json.loads((tmp_path / LEASE_NAME).read_text())["host"] == socket.gethostname()


def test_a_half_written_lease_is_taken_over(tmp_path):
    (tmp_path / LEASE_NAME).write_text("")  # a driver killed between create and write
    with lease.lease(str(tmp_path)):
        assert json.loads((tmp_path / LEASE_NAME).read_text())["pid"] == os.getpid()


def test_the_holder_renews_its_lease(tmp_path, monkeypatch):
    monkeypatch.setattr(lease, "RENEW_S", 0.2)
    with lease.lease(str(tmp_path)):
        first = json.loads((tmp_path / LEASE_NAME).read_text())
        time.sleep(1.0)
        later = json.loads((tmp_path / LEASE_NAME).read_text())
    assert later["token"] == first["token"] and later["started"] == first["started"]
    assert later["renewed_unix"] > first["renewed_unix"]


def test_an_object_store_experiment_holds_no_lease(tmp_path, monkeypatch):
    """No atomic create there: nothing is written, locally or remotely."""
    monkeypatch.chdir(tmp_path)
    with lease.lease("s3://bucket/runs/x"):
        pass
    assert list(tmp_path.iterdir()) == []

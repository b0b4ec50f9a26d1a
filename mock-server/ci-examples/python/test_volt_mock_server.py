"""A pytest fixture that runs volt-mock-server for a test, and tests using it.

Copy the fixture into your conftest.py. It needs only the standard library
(and pytest). The binary is found through VOLT_MOCK_SERVER_BIN, else on PATH.
"""

import json
import os
import selectors
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest

ADMIN_TOKEN = "ci-admin-token"


def _binary():
    path = os.environ.get("VOLT_MOCK_SERVER_BIN") or shutil.which("volt-mock-server")
    if not path:
        # Never skip silently: a missing binary is a broken setup.
        raise RuntimeError("set VOLT_MOCK_SERVER_BIN or put volt-mock-server on PATH")
    return path


def _read_banner(proc, timeout=10.0):
    """The first stdout line is `listening http://HOST:PORT`."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sel.select(timeout=deadline - time.monotonic()):
            line = proc.stdout.readline()
            if not line.startswith("listening "):
                raise RuntimeError(f"unexpected first line {line!r} (exit {proc.poll()})")
            return line[len("listening "):].strip()
    raise RuntimeError("volt-mock-server printed no banner in time")


@pytest.fixture
def volt_mock_server():
    """Starts the server on an ephemeral port; yields its base URL."""
    env = dict(os.environ, VOLT_MOCK_CLUSTER="py-cluster:py-password",
               VOLT_MOCK_ADMIN_TOKEN=ADMIN_TOKEN, RUST_LOG="warn")
    proc = subprocess.Popen([_binary(), "--listen", "127.0.0.1:0"], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        yield _read_banner(proc)
    finally:
        proc.terminate()  # SIGTERM: a clean stop, exit code 0
        assert proc.wait(timeout=10) == 0
        proc.stdout.close()


def admin(base, method, path, body=None, token=ADMIN_TOKEN):
    """Calls the admin API; returns (status, parsed JSON body)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def test_admin_api_needs_the_token(volt_mock_server):
    status, _ = admin(volt_mock_server, "GET", "/admin/daemons", token=None)
    assert status == 401


def test_no_daemon_is_connected_at_first(volt_mock_server):
    assert admin(volt_mock_server, "GET", "/admin/daemons") == (200, [])
    status, body = admin(volt_mock_server, "POST", "/admin/daemons/py-cluster/commands",
                         {"command": "ls", "payload": {}, "timeoutMs": 100})
    assert status == 404, body


def test_a_scenario_is_set_up_through_the_admin_api(volt_mock_server):
    status, _ = admin(volt_mock_server, "POST", "/admin/clusters",
                      {"teamClusterId": "another", "daemonPassword": "pw"})
    assert status == 201
    status, _ = admin(volt_mock_server, "PUT", "/admin/responders/status",
                      {"ok": True, "data": {"up": True}})
    assert status == 200
    status, faults = admin(volt_mock_server, "PUT", "/admin/faults", {"refuseConnections": 2})
    assert status == 200 and faults["refuseConnections"] == 2
    status, stats = admin(volt_mock_server, "GET", "/admin/stats")
    assert status == 200 and isinstance(stats, dict)
    status, body = admin(volt_mock_server, "PUT", "/admin/faults", {"noSuchFault": True})
    assert status == 400, body

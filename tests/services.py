"""Services the slow tests start on 127.0.0.1 (moto's S3 server, PostgreSQL, ``mlflow server``):
free ports, processes in their own session, and what a client of moto's S3 needs.

The ``s3`` fixture (tests/conftest.py) starts moto's server once per session; the tracking-server
tests keep their artifacts under ``mlartifacts/`` in its bucket, the DVC-remote test under ``dvc/``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BUCKET = "mlflow-artifacts"
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
START_TIMEOUT = 180  # seconds for a service to answer; a new database's migrations take a few


def unavailable(reason: str, ci_hint: str = "") -> None:
    """Skip where the service cannot exist on this machine; under CI that is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; under CI this must not be skipped{f' ({ci_hint})' if ci_hint else ''}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def script(name: str) -> str | None:
    """A console script of this environment (the one running pytest), else one on PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else shutil.which(name)


def required_script(name: str) -> str:
    found = script(name)
    if found is None:
        pytest.fail(f"{name} not found beside {sys.executable} or on PATH: install requirements.lock")
    return found


def tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


@dataclass
class Service:
    """A process started in its own session (its children too are stopped with it)."""

    name: str
    proc: subprocess.Popen
    log: Path
    url: str = ""
    env: dict[str, str] = field(default_factory=dict)  # what a client of it needs
    backend: str = ""  # a tracking server's backend store URI

    def wait_until(self, ready, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.proc.returncode} while starting:\n{tail(self.log)}")
            try:
                if ready():
                    return
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        pytest.fail(f"{self.name} did not answer within {timeout}s:\n{tail(self.log)}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        try:  # workers left in the group after their parent ended
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def start(name: str, cmd: list[str], log: Path, env: dict[str, str], cwd: Path) -> Service:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    return Service(name, proc, log)


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as r:
        return r.status == 200


def base_env() -> dict[str, str]:
    """This process's environment without anything naming a tracking store or AWS credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    env.pop("PIPELINE_OUTBOX", None)
    return env


def boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": AWS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS["AWS_SECRET_ACCESS_KEY"],
        "region_name": AWS["AWS_DEFAULT_REGION"],
    }


def bucket_keys(s3_service: Service, prefix: str) -> list[str]:
    """Every key under ``prefix`` in the bucket, read straight from the S3 server."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_service.url, **boto_credentials())
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def start_s3(d: Path) -> Service:
    """moto's S3 server on a free port with an empty bucket; ``env``: what a client of it needs.

    Where moto is not installed the test is skipped (under CI: fails)."""
    import importlib.util

    moto_server = script("moto_server")
    if moto_server is None or importlib.util.find_spec("moto") is None or importlib.util.find_spec("boto3") is None:
        unavailable(
            "moto's S3 server is not installed (moto[server] and boto3, in requirements.lock)",
            "install requirements.lock",
        )
    import boto3

    port = free_port()
    service = start(
        "moto_server", [moto_server, "-H", "127.0.0.1", "-p", str(port)], d / "moto.log", {**base_env(), **AWS}, d
    )
    try:
        service.url = f"http://127.0.0.1:{port}"
        service.wait_until(lambda: http_ok(f"{service.url}/moto-api/"))
        service.env = {**AWS, "MLFLOW_S3_ENDPOINT_URL": service.url}
        boto3.client("s3", endpoint_url=service.url, **boto_credentials()).create_bucket(Bucket=BUCKET)
    except BaseException:
        service.stop()
        raise
    return service


def default_sigint() -> None:
    """A child's ``preexec_fn``: Ctrl-C as a terminal gives it, even when the tests run in a
    background job (whose children inherit SIGINT ignored, and Python then never raises
    KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

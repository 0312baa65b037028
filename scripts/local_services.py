"""Local stand-ins for the compose services, for machines without Docker.

    python scripts/local_services.py s3 up|down|env        SeaweedFS (`weed`) as the S3 server
    python scripts/local_services.py prometheus up|down    Debian's prometheus binary

The justfile calls these when Docker is not available. ``up`` starts the server in the
background (and reuses a running one), ``down`` stops it, ``env`` prints the S3 variables
to ``export`` (the port is chosen at first start and kept). State lives in
``<dir>/<service>/state.json`` (``--dir``, default ``.kalshi``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from kalshi.testing.s3server import S3Server

ROOT = Path(__file__).resolve().parents[1]


def _state(base: Path, service: str) -> Path:
    return base / service / "state.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running(base: Path, service: str) -> dict[str, Any] | None:
    path = _state(base, service)
    if not path.is_file():
        return None
    state: dict[str, Any] = json.loads(path.read_text())
    return state if _alive(int(state["pid"])) else None


def _stop(base: Path, service: str) -> None:
    state = _running(base, service)
    _state(base, service).unlink(missing_ok=True)
    if state is None:
        print(f"{service}: not running")
        return
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
        with contextlib.suppress(ChildProcessError):  # reap it if it is our child
            os.waitpid(pid, os.WNOHANG)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    print(f"{service}: stopped (pid {pid})")


# --- S3 ----------------------------------------------------------------------------------


def s3_up(base: Path) -> None:
    state = _running(base, "s3")
    if state is None:
        server = S3Server(
            base / "s3",
            access_key=os.environ.get("S3_ACCESS_KEY") or "minioadmin",
            secret_key=os.environ.get("S3_SECRET_KEY") or "minioadmin",
        )
        server.start()
        bucket = os.environ.get("S3_BUCKET") or "kalshi-data-local"
        server.create_bucket(bucket)
        proc = server._proc  # left running on purpose: `down` stops it by pid
        assert proc is not None
        state = {
            "pid": proc.pid,
            "endpoint": server.endpoint,
            "access_key": server.access_key,
            "secret_key": server.secret_key,
            "bucket": bucket,
        }
        _state(base, "s3").write_text(json.dumps(state))
        print(f"s3: started {state['endpoint']} (weed, pid {state['pid']}), bucket {bucket}")
    else:
        print(f"s3: running at {state['endpoint']} (pid {state['pid']})")


def s3_env(base: Path) -> None:
    state = _running(base, "s3")
    if state is None:
        sys.exit("s3: not running; start it with `just up`")
    print(f"export S3_ENDPOINT={state['endpoint']}")
    print(f"export S3_ACCESS_KEY={state['access_key']}")
    print(f"export S3_SECRET_KEY={state['secret_key']}")
    print(f"export S3_BUCKET={state['bucket']}")


# --- Prometheus ------------------------------------------------------------------------------


def local_prometheus_config(targets_host: str = "127.0.0.1") -> dict[str, Any]:
    """etc/prometheus/prometheus.yml for processes on this host (no compose targets)."""
    config: dict[str, Any] = yaml.safe_load((ROOT / "etc/prometheus/prometheus.yml").read_text())
    config["rule_files"] = [str(ROOT / "etc/prometheus" / name) for name in config["rule_files"]]
    for job in config["scrape_configs"]:
        job["static_configs"] = [
            {
                "targets": [t.replace("host.docker.internal", targets_host) for t in sc["targets"]],
                "labels": sc.get("labels", {}),
            }
            for sc in job["static_configs"]
            if sc.get("labels", {}).get("deployment") == "host"
        ]
    return config


def prometheus_up(base: Path, port: int) -> None:
    state = _running(base, "prometheus")
    if state is not None:
        print(f"prometheus: running at {state['url']} (pid {state['pid']})")
        return
    binary = shutil.which("prometheus")
    if binary is None:
        sys.exit("prometheus: not found; install Debian's package: apt-get install prometheus")
    home = base / "prometheus"
    home.mkdir(parents=True, exist_ok=True)
    (home / "prometheus.yml").write_text(yaml.safe_dump(local_prometheus_config()))
    with open(home / "prometheus.log", "ab") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={home / 'prometheus.yml'}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"prometheus: did not start; see {home / 'prometheus.log'}")
            time.sleep(0.2)
    _state(base, "prometheus").write_text(json.dumps({"pid": proc.pid, "url": url}))
    print(f"prometheus: started {url} (pid {proc.pid})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path(".kalshi"), help="state directory")
    sub = parser.add_subparsers(dest="service", required=True)
    s3 = sub.add_parser("s3", help="the S3 server (weed)")
    s3.add_argument("action", choices=["up", "down", "env"])
    prom = sub.add_parser("prometheus", help="the Prometheus server")
    prom.add_argument("action", choices=["up", "down"])
    prom.add_argument("--port", type=int, default=int(os.environ.get("PROMETHEUS_PORT") or 9092))
    args = parser.parse_args(argv)
    base = args.dir.absolute()
    (base / args.service).mkdir(parents=True, exist_ok=True)
    if args.service == "s3":
        {"up": s3_up, "down": lambda b: _stop(b, "s3"), "env": s3_env}[args.action](base)
    elif args.action == "up":
        prometheus_up(base, args.port)
    else:
        _stop(base, "prometheus")


if __name__ == "__main__":
    main()

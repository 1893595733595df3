"""A dev cluster on this machine: ``make cluster`` / ``make cluster-stop`` (docs/kubernetes.md,
"A dev cluster on your machine").

``start`` runs ``serve`` in the background and returns once the cluster is up: etcd,
kube-apiserver, kube-controller-manager and the test kubelet of tests/e2e/infra (in container
mode when podman and the images of ``make images`` are there, else process mode), plus a
secured nats-server with JetStream on loopback for the chart (``nats.enabled=false``,
``natsUrl``), whose ``issuer.json`` ``rebeam nats-secrets --issuer-file`` turns into the
chart's Secrets. It writes, under ``.cache/cluster/``: ``admin.kubeconfig``, ``values.yaml``
(the chart's values for this cluster), ``chart/rebeam`` (the chart without its NATS
dependency, which cannot be fetched offline), ``issuer.json``, ``env.sh`` (the exports) and
``state.json`` (the pid of ``serve``, what ``stop`` reads), and ``cluster.log``.

``stop`` sends SIGTERM to that pid: ``serve`` stops the kubelet (every container it ran goes),
NATS and the control plane, each by its own pid. If ``serve`` does not end within a minute it
is killed; the control-plane processes die with it (they run with a parent-death signal), and
containers left behind are removed by label.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests" / "e2e")]  # infra (tests/e2e/infra), tools, tests

STATE_DIR = REPO / ".cache" / "cluster"
DOC = REPO / "docs" / "kubernetes.md"
WALKTHROUGH = re.compile(r"^```sh[ \t]+walkthrough[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
START_TIMEOUT = 300.0  # a cold control plane on a busy 2-core machine
STOP_TIMEOUT = 60.0
NODE = "rebeam-e2e-node"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_state(state_dir: Path) -> dict[str, object] | None:
    try:
        state: dict[str, object] = json.loads((state_dir / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return state


def _containers_possible() -> bool:
    """Container mode needs podman and every image ``make images`` builds."""
    from tools.images import IMAGES, ImageError, engine

    try:
        eng = engine()
    except ImageError:
        return False
    if shutil.which(eng.command) is None:
        return False
    return all(eng.exists(eng.name(image)) for image in IMAGES)


def _values(nats_url: str, containers: bool) -> dict[str, object]:
    """The chart's values for this cluster: its NATS, and in container mode our images (the
    demo image as the default actor image, so examples/demo/app.yaml runs as written)."""
    from infra.hostnet import share_host_network

    operator: dict[str, object] = {}
    if containers:
        from tools.images import engine

        eng = engine()
        repository, _, tag = eng.name("operator").rpartition(":")
        operator = {"image": {"repository": repository, "tag": tag}}
        operator["actorImage"] = eng.name("demo")
    else:
        # Each process-kubelet container has a termination-message file of its own.
        operator = {"exitRecord": "$$(REBEAM_TERMINATION_LOG)"}
    metrics = share_host_network(operator)  # every pod is on this machine's network
    return {
        "nats": {"enabled": False},
        "natsUrl": nats_url,
        "operator": operator,
        "metrics": metrics,
    }


def serve(state_dir: Path, containers: bool) -> None:
    """Run the cluster until SIGTERM or SIGINT (the body of ``start``'s background process)."""
    import yaml
    from infra.cluster import Cluster
    from tests.chart.chart_helpers import offline_chart

    from rebeam.auth.serverconf import SHARED_ACCOUNT
    from rebeam.natsd import NatsServer, ServerOptions

    # The kubelet's and the control plane's messages go to cluster.log.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    workdir = state_dir / "work"
    shutil.rmtree(workdir, ignore_errors=True)
    with Cluster.local(workdir, crds=REPO / "crds", containers=containers) as cluster:
        options = ServerOptions(shared_account=SHARED_ACCOUNT, primary_issuer=False)
        with NatsServer.start(workdir / "nats", options) as nats:
            shutil.copy(cluster.kubeconfig, state_dir / "admin.kubeconfig")
            shutil.copy(workdir / "nats" / "issuer.json", state_dir / "issuer.json")
            (state_dir / "issuer.json").chmod(0o600)
            (state_dir / "values.yaml").write_text(
                yaml.safe_dump(_values(nats.url, containers), sort_keys=False)
            )
            offline_chart(state_dir / "chart")
            binaries = [REPO / ".cache" / "controlplane", Path(sys.executable).parent]
            (state_dir / "env.sh").write_text(
                f"export REBEAM_CLUSTER={state_dir}\n"
                f"export KUBECONFIG={state_dir / 'admin.kubeconfig'}\n"
                f"export REBEAM_NATS_URL={nats.url}\n"
                f"export PATH={':'.join(str(b) for b in binaries)}:$PATH\n"
            )
            state = {
                "pid": os.getpid(),
                "mode": "containers" if containers else "processes",
                "kubeconfig": str(state_dir / "admin.kubeconfig"),
                "server": cluster.control_plane.server if cluster.control_plane else "",
                "nats_url": nats.url,
            }
            (state_dir / "state.json").write_text(json.dumps(state, indent=2))
            print(f"cluster: up ({state['mode']})", flush=True)
            stop.wait()
            print("cluster: stopping", flush=True)
    (state_dir / "state.json").unlink(missing_ok=True)
    print("cluster: stopped", flush=True)


def start(state_dir: Path, mode: str) -> int:
    state = _read_state(state_dir)
    if state is not None and _alive(int(str(state["pid"]))):
        print(f"cluster: already running (pid {state['pid']}); `make cluster-stop` stops it")
        _print_next(state_dir)
        return 0
    containers = mode == "containers" or (mode == "auto" and _containers_possible())
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "state.json").unlink(missing_ok=True)
    log_path = state_dir / "cluster.log"
    argv = [sys.executable, __file__, "serve", "--state-dir", str(state_dir)]
    argv.append("--containers" if containers else "--processes")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # it outlives `make`, until `make cluster-stop`
        )  # fmt: skip
    print(f"cluster: starting ({'containers' if containers else 'processes'}), log {log_path}")
    deadline = time.monotonic() + START_TIMEOUT
    while _read_state(state_dir) is None:
        if process.poll() is not None:
            print(f"cluster: failed to start; the end of {log_path}:", file=sys.stderr)
            print(log_path.read_text(errors="replace")[-4000:], file=sys.stderr)
            return 1
        if time.monotonic() > deadline:
            print(f"cluster: not up within {START_TIMEOUT:.0f} s; stopping it", file=sys.stderr)
            _stop_pid(process.pid)
            return 1
        time.sleep(0.2)
    _print_next(state_dir)
    return 0


def walkthrough() -> list[str]:
    """The commands of docs/kubernetes.md's ```` ```sh walkthrough ```` block: what ``start``
    prints as next steps, and what tests/e2e/test_e2e_walkthrough.py runs."""
    blocks = WALKTHROUGH.findall(DOC.read_text())
    if len(blocks) != 1:
        raise ValueError(f"{DOC} should have exactly one ```sh walkthrough block")
    return [line for line in blocks[0].splitlines() if line.strip()]


def _print_next(state_dir: Path) -> None:
    print((state_dir / "env.sh").read_text(), end="")
    print(f"# the lines above are in {state_dir / 'env.sh'}: `. {state_dir / 'env.sh'}`")
    print("# then (docs/kubernetes.md, 'A dev cluster on your machine'):")
    for command in walkthrough():
        print(f"#   {command}")
    print("# and `make cluster-stop` to stop it all")


def _stop_pid(pid: int) -> bool:
    """SIGTERM, up to STOP_TIMEOUT for it to end, then SIGKILL; True if it ended by itself."""
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        os.kill(pid, signal.SIGTERM)
        ended, _, _ = select.select([handle], [], [], STOP_TIMEOUT)
        if not ended:
            os.kill(pid, signal.SIGKILL)
            select.select([handle], [], [], STOP_TIMEOUT)
        return bool(ended)
    except ProcessLookupError:
        return True
    finally:
        os.close(handle)


def stop(state_dir: Path) -> int:
    state = _read_state(state_dir)
    if state is None:
        print("cluster: not running")
        return 0
    pid = int(str(state["pid"]))
    if not _stop_pid(pid):
        print(f"cluster: pid {pid} did not stop within {STOP_TIMEOUT:.0f} s: killed")
    if state.get("mode") == "containers":
        from infra.containers import remove_leftovers
        from tools.images import engine

        remove_leftovers(engine(), NODE)
    (state_dir / "state.json").unlink(missing_ok=True)
    print("cluster: stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("start", "stop", "serve"))
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--containers", dest="mode", action="store_const", const="containers")
    mode.add_argument("--processes", dest="mode", action="store_const", const="processes")
    args = parser.parse_args(argv)
    state_dir = args.state_dir.resolve()
    if args.command == "serve":
        serve(state_dir, args.mode == "containers")
        return 0
    if args.command == "stop":
        return stop(state_dir)
    return start(state_dir, args.mode or "auto")


if __name__ == "__main__":
    raise SystemExit(main())

"""The observer against a cluster's NATS: ``rebeam observe --nats ... --credentials-file ...``
(and a person's kubeconfig token), where the operator answers the management protocol, in a
real headless Chromium (docs/observability.md, "Against a cluster").

The tree appears with the operator's children, their pods and states; a pod's process killed
by the kubelet shows as an exit and a restart, and the next pod; a child restarted, or
terminated and started again, from the page comes back as its next incarnation; Python
actors' stats and state summaries appear (their pods answer them), a command child's say it
has none; a person whose Role grants only ``get`` on Supervisors sees the tree but is
refused a restart, by name, on the page, and the refusal stays while the tree changes; a
person without ``get`` cannot start the observer and is told why in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from infra.cluster import Cluster
from infra.kubelet import ProcessKubelet
from operator_helpers import Lifecycle, Objects, Operator, actor, sleeper, supervisor
from tests.observer.browser import (  # noqa: F401 - the fixtures browser and observers
    Observe,
    browser_fixture,
    cell,
    click,
    launch_observer,
    live,
    notice,
    observers_fixture,
    timeline,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]

REBEAM = str(Path(sys.executable).parent / "rebeam")
DEADLINE = 60.0  # a pod's start on a busy 2-core machine, the operator's pass included
# The page's columns (rebeam.observe.page.COLUMNS).
KIND, STATE, INC, LAST_EXIT, PROCESS, MAILBOX, RATE, LATENCY = 1, 2, 3, 5, 6, 7, 8, 9

MANIFEST = supervisor(
    "shop",
    [
        actor("counter", "hello.counter:Counter", register="counter"),
        actor("other", "hello.counter:Counter"),
        sleeper("idle"),
        {"name": "inner", "supervisor": {"children": [sleeper("tick")]}},  # an object of its own
    ],
    intensity=10,
    period="60s",
)


def observer_args(
    nats_url: str, namespace: str, workdir: Path, *, token: str = "", kubeconfig: Path | None = None
) -> tuple[list[str], dict[str, str]]:
    """The arguments and environment of ``rebeam observe`` with ``token`` in a credentials
    file, or else with the token of ``kubeconfig``'s user: no other credential is in its
    environment, so the operator decides with that identity."""
    env = {k: v for k, v in os.environ.items() if k not in ("REBEAM_CREDENTIALS", "KUBECONFIG")}
    args = ["--nats", nats_url, "--namespace", namespace]
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    else:
        credentials = workdir / f"credentials-{len(list(workdir.glob('credentials-*')))}"
        credentials.write_text(token)
        credentials.chmod(0o600)
        args += ["--credentials-file", str(credentials)]
    return args, env


def observe(nats_url: str, namespace: str, workdir: Path, **credential: Any) -> Observe:
    args, env = observer_args(nats_url, namespace, workdir, **credential)
    return launch_observer(args, env, timeout=DEADLINE)


def observe_refused(
    nats_url: str, namespace: str, workdir: Path, **credential: Any
) -> subprocess.CompletedProcess[str]:
    """``rebeam observe`` run to its end (it is expected not to start serving)."""
    args, env = observer_args(nats_url, namespace, workdir, **credential)
    return subprocess.run(
        [REBEAM, "observe", *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        env=env,
        check=False,
    )


@dataclass
class Scene:
    """What the phases of the test act on: the page, the pods, the events, the NATS."""

    browser: Any
    kubelet: ProcessKubelet
    lifecycle: Lifecycle
    nats_url: str
    namespace: str

    def rebeam(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The rebeam CLI as the cluster's admin (REBEAM_CREDENTIALS, the fixtures')."""
        return subprocess.run(
            [REBEAM, *args, "--nats-url", self.nats_url, "--namespace", self.namespace],
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ),
            check=False,
        )


def test_the_observer_against_the_operator(
    cluster: Cluster,
    operator: Operator,
    objects: Objects,
    kubelet: ProcessKubelet,
    lifecycle: Lifecycle,
    nats_url: str,
    namespace: str,
    observers: list[Observe],
    browser: Any,
    tmp_path: Path,
) -> None:
    objects.apply(MANIFEST)
    objects.wait_status("shop", lambda s: s.get("ready") == "4/4", what="4/4 ready", timeout=90)
    admin = observe(nats_url, namespace, tmp_path, token=cluster.admin_token())
    observers.append(admin)
    browser.get(admin.url)
    live(browser)
    scene = Scene(browser, kubelet, lifecycle, nats_url, namespace)

    the_tree_appears(scene)
    a_killed_pod_shows_its_exit_and_restart(scene)
    actions_from_the_page_take_effect(scene)
    stats_names_and_states_come_from_the_pods(scene)
    shot = tmp_path / "observer-cluster.png"
    assert browser.save_screenshot(str(shot))
    print(f"observer screenshot against the cluster: {shot}")

    # A person who may read the tree but not change it: the page shows the refusal. This
    # observer finds its credential in its kubeconfig (the user's token), as a person's would.
    cluster.kubectl("create", "serviceaccount", "viewer", "-n", namespace)
    cluster.kubectl("create", "role", "viewer", "-n", namespace, "--verb=get",
                    "--resource=supervisors.rebeam.io")  # fmt: skip
    cluster.kubectl("create", "rolebinding", "viewer", "-n", namespace, "--role=viewer",
                    f"--serviceaccount={namespace}:viewer")  # fmt: skip
    token = cluster.service_account_token(namespace, "viewer")
    kubeconfig = cluster.token_kubeconfig(token, tmp_path / "viewer.kubeconfig", user="viewer")
    viewer = observe(nats_url, namespace, tmp_path, kubeconfig=kubeconfig)
    observers.append(viewer)
    browser.get(viewer.url)
    live(browser)
    a_reader_is_refused_on_the_page(scene, f"system:serviceaccount:{namespace}:viewer")

    # Without the right to read the tree, the observer does not start, and says why.
    cluster.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    nobody = cluster.service_account_token(namespace, "nobody")
    refused = observe_refused(nats_url, namespace, tmp_path, token=nobody)
    assert refused.returncode == 1
    assert f"may not get supervisors in namespace {namespace}" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1, refused.stderr
    operator.check_running()


def the_tree_appears(scene: Scene) -> None:
    """The operator's tree: each child, its state and incarnation, and the pod it runs in."""
    page = scene.browser
    for name in ("counter", "other", "idle"):
        path = f"shop/{name}"
        wait_for(lambda p=path: cell(page, p, STATE) == "running", what=f"{path} running")
        assert cell(page, path, KIND) == "actor"
        assert cell(page, path, INC) == "1"
        assert cell(page, path, PROCESS) == f"shop-{name}-1"
    # A nested supervisor (a Supervisor object the operator made) and its child, below it.
    assert cell(page, "shop/inner", KIND) == "one_for_one"
    assert cell(page, "shop/inner", PROCESS) == ""  # no pod of its own: pods below it
    wait_for(
        lambda: cell(page, "shop/inner/tick", STATE) == "running",
        timeout=DEADLINE,
        what="shop/inner/tick running",
    )
    assert cell(page, "shop/inner/tick", PROCESS) == "shop-inner-tick-1"


def a_killed_pod_shows_its_exit_and_restart(scene: Scene) -> None:
    """A pod's process killed: its exit and its restart show, and the next pod."""
    page = scene.browser
    scene.kubelet.kill_container(scene.namespace, "shop-counter-1", "actor", signal.SIGKILL)
    on_timeline(page, "shop/counter#1 exited")
    on_timeline(page, "shop/counter#2 started")
    wait_for(lambda: cell(page, "shop/counter", INC) == "2", what="counter#2 on the page")
    wait_for(lambda: cell(page, "shop/counter", PROCESS) == "shop-counter-2", what="its new pod")
    assert "killed" in cell(page, "shop/counter", LAST_EXIT)
    assert cell(page, "shop", 4) == "1"  # the supervisor's restarts in its window


def actions_from_the_page_take_effect(scene: Scene) -> None:
    """Restarted from the page: the operator stops the pod and starts the next incarnation;
    terminated (its pod goes), then started again."""
    page = scene.browser
    act(page, "shop/other", "restart")
    wait_for(lambda: "done" in notice(page), timeout=DEADLINE, what="the action's notice")
    wait_for(
        lambda: cell(page, "shop/other", INC) == "2",
        timeout=DEADLINE,
        what="other#2 on the page",
    )
    scene.lifecycle.wait("started other", count=2)
    wait_for(
        lambda: cell(page, "shop/other", STATE) == "running",
        timeout=DEADLINE,
        what="other#2 running",
    )

    act(page, "shop/idle", "terminate")
    wait_for(
        lambda: (
            cell(page, "shop/idle", STATE) not in ("running", "exited", "restarting")
            and cell(page, "shop/idle", PROCESS) == ""
        ),
        timeout=DEADLINE,
        what="idle terminated, no pod",
    )
    act(page, "shop/idle", "restart")
    wait_for(
        lambda: (
            cell(page, "shop/idle", STATE) == "running"
            and cell(page, "shop/idle", PROCESS) == "shop-idle-2"
        ),
        timeout=DEADLINE,
        what="idle#2 running in its pod",
    )


def stats_names_and_states_come_from_the_pods(scene: Scene) -> None:
    """A latency once the counter handled calls; none for the command child, which answers
    no stats request; the registered name; the state button's answers."""
    page = scene.browser

    def busy_counter() -> str:
        call = scene.rebeam("call", "counter", "{}")
        assert call.returncode == 0, call.stderr
        return cell(page, "shop/counter", LATENCY)

    assert wait_for(busy_counter, timeout=DEADLINE, what="a handler latency").endswith(" ms")
    assert float(cell(page, "shop/counter", RATE)) >= 0
    assert cell(page, "shop/counter", MAILBOX) == "0"
    assert cell(page, "shop/idle", MAILBOX) == ""
    # The registered name, shown as the place of its pid (an opaque slot id on a cluster).
    directory = page.find_element("id", "directory")
    wait_for(lambda: "counter shop/counter#2" in directory.text, what="the registered name")

    # A Python actor's pod answers the state request; a command child's pod has no state.
    click(page, "shop/counter", "status")
    wait_for(lambda: "defines no format_status" in status_box(page), what="counter's state")
    click(page, "shop/idle", "status")
    wait_for(lambda: "a command child has no state" in status_box(page), what="idle's")


def a_reader_is_refused_on_the_page(scene: Scene, user: str) -> None:
    """The tree is shown; a restart is refused by the operator, by name, on the page, and
    the refusal stays there while the tree changes."""
    page = scene.browser
    wait_for(lambda: cell(page, "shop/idle", STATE) == "running", what="the reader's tree")
    act(page, "shop/idle", "restart")
    refusal = wait_for(
        lambda: "may not" in notice(page) and notice(page),
        timeout=DEADLINE,
        what="the refusal on the page",
    )
    where = f"supervisors/shop in namespace {scene.namespace}"
    assert f"user {user} may not patch {where}" in refusal
    assert cell(page, "shop/idle", INC) == "2"  # nothing happened
    assert scene.lifecycle.lines().count("started idle") == 2
    scene.kubelet.kill_container(scene.namespace, "shop-counter-2", "actor", signal.SIGKILL)
    wait_for(
        lambda: cell(page, "shop/counter", INC) == "3",
        timeout=DEADLINE,
        what="counter#3 on the reader's page",
    )
    assert notice(page) == refusal


def act(driver: Any, path: str, op: str) -> None:
    """Press ``op`` for ``path`` and confirm it."""
    click(driver, path, op)
    wait_for(lambda: driver.switch_to.alert, what="the confirmation").accept()


def status_box(driver: Any) -> str:
    return str(driver.execute_script("return document.getElementById('status').textContent"))


def on_timeline(driver: Any, text: str) -> None:
    wait_for(
        lambda: any(text in line for line in timeline(driver)),
        timeout=DEADLINE,
        what=f"{text!r} on the timeline",
    )

"""Build the operator, actor and demo images of images/ (``make images``); docs/kubernetes.md,
"Images", says how to use them.

Two ways, chosen with ``--base`` (default: ``local`` as root, else ``registry``):

- ``registry``: the Dockerfiles exactly as a user builds them, with docker or podman from
  ``python:3.11-slim``, into the engine's usual image store.
- ``local``: for a machine without a reachable container registry (CI). The base image is
  made here: a Debian bookworm tree from ``debootstrap`` with Python, imported into podman and
  passed as the Dockerfiles' ``PYTHON_IMAGE``. Podman then runs with a configuration and an
  image store of its own under ``$REBEAM_CACHE/images`` (default ``~/.cache/rebeam/images``),
  never the system's, so the base image (keyed by its recipe) and the build layers survive
  between runs. Missing tools (podman, runc, debootstrap) are installed with apt when run as
  root; otherwise the error says what to install.

Only the standard library: this runs before the project's virtualenv matters. The tests of
tests/images and tests/e2e/images import :func:`engine` to run what was built.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import inspect
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("REBEAM_CACHE") or Path.home() / ".cache" / "rebeam") / "images"
TAG = "dev"
# Built in this order: the demo image starts FROM the actor image.
IMAGES = ("operator", "actor", "demo")
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"

# The local base: what python:3.11-slim-bookworm offers the Dockerfiles (python, pip).
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
TOOL_PACKAGES = {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap"}


class ImageError(Exception):
    """A build step failed; the message says which and why."""


def log(message: str) -> None:
    print(f"images: {message}", flush=True)


@dataclass(frozen=True)
class Engine:
    """How to call the container engine that holds the images: its command and environment."""

    command: str
    env: dict[str, str] = field(default_factory=dict)
    local: bool = False

    def argv(self, *args: str) -> list[str]:
        return [self.command, *args]

    def environ(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def run(
        self, *args: str, check: bool = True, capture: bool = False
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.argv(*args),
            env=self.environ(),
            text=True,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            check=False,
        )
        if check and result.returncode != 0:
            detail = (result.stderr or "").strip()[-2000:] if capture else "(output above)"
            raise ImageError(f"`{' '.join(self.argv(*args))}` failed: {detail}")
        return result

    def name(self, image: str) -> str:
        """The reference of one of our images (podman keeps short names under localhost/)."""
        short = f"rebeam-{image}:{TAG}"
        return f"localhost/{short}" if self.command == "podman" else short

    def exists(self, reference: str) -> bool:
        return self.run("image", "inspect", reference, check=False, capture=True).returncode == 0

    def size(self, reference: str) -> int:
        out = self.run("image", "inspect", "--format", "{{.Size}}", reference, capture=True)
        return int(out.stdout.strip())


def _local_engine() -> Engine:
    """Podman with a configuration and a store of our own (never /etc or the system's store).

    runc, because crun fails on the hybrid cgroup layout of the VMs CI runs on; ulimits the
    process already has, because such a VM cannot raise them; cgroupfs and no event log,
    because no systemd may be running (and a log of events would only grow)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = 1048576 if nofile == resource.RLIM_INFINITY else nofile
    containers_conf = CACHE / "containers.conf"
    storage_conf = CACHE / "storage.conf"
    _write_if_changed(
        containers_conf,
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc=32768:32768"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "none"\n'
        f'tmp_dir = "{CACHE / "tmp"}"\n',
    )
    _write_if_changed(
        storage_conf,
        "[storage]\n"
        'driver = "overlay"\n'
        f'graphroot = "{CACHE / "storage"}"\n'
        f'runroot = "{CACHE / "run"}"\n',
    )
    env = {"CONTAINERS_CONF": str(containers_conf), "CONTAINERS_STORAGE_CONF": str(storage_conf)}
    return Engine("podman", env, local=True)


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def default_base() -> str:
    return "local" if os.geteuid() == 0 else "registry"


def engine(base: str | None = None, command: str | None = None) -> Engine:
    """The engine ``make images`` used with the same choices (the tests call it too)."""
    base = base or os.environ.get("REBEAM_IMAGES_BASE") or default_base()
    command = command or os.environ.get("REBEAM_IMAGES_ENGINE")
    if base not in ("local", "registry"):
        raise ImageError(f"REBEAM_IMAGES_BASE={base}: it is local or registry")
    if command not in (None, "", "podman", "docker"):
        raise ImageError(f"REBEAM_IMAGES_ENGINE={command}: it is podman or docker")
    if base == "local":
        return _local_engine()
    if not command:
        command = "podman" if shutil.which("podman") else "docker"
    return Engine(command)


# --- tools -----------------------------------------------------------------------------------


def ensure_tools(needed: tuple[str, ...]) -> None:
    missing = [TOOL_PACKAGES[tool] for tool in needed if shutil.which(tool) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        raise ImageError(
            f"missing {', '.join(missing)}: install them (Debian: "
            f"`sudo apt-get install -y {' '.join(missing)}`), or build with "
            "`--base registry` where a registry is reachable"
        )
    log(f"installing with apt-get: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", *missing]):
        if subprocess.run(argv, env=env, check=False).returncode != 0:
            raise ImageError(f"`{' '.join(argv)}` failed (output above)")


# --- the local base image ---------------------------------------------------------------------


def apt_sources() -> list[Path]:
    return [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]


def debian_mirror(sources: list[Path] | None = None) -> str:
    """The Debian mirror apt on this machine uses (deb822 or one-line sources)."""
    for path in apt_sources() if sources is None else sources:
        with contextlib.suppress(OSError):
            uris: list[str] = []
            for line in path.read_text().splitlines():
                words = line.split("#", 1)[0].split()
                if words[:1] == ["URIs:"]:
                    uris = words[1:]
                elif words[:1] == ["Suites:"] and SUITE in words[1:] and uris:
                    return uris[0]
                elif words[:1] == ["deb"] and SUITE in words:
                    uri = next((w for w in words[1:] if "://" in w), None)
                    if uri and words[words.index(uri) + 1 :][:1] == [SUITE]:
                        return uri
    return DEFAULT_MIRROR


def _make_base_tree(root: Path, mirror: str) -> None:
    """The recipe of the base image (its source is part of the cache key)."""
    run_checked(["debootstrap", "--variant=minbase", SUITE, str(root), mirror])
    chroot_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive"}
    # No pty in a bare chroot: without Use-Pty=0 apt prints a harmless but alarming "E:" line.
    apt = ["apt-get", "-o", "Dpkg::Use-Pty=0"]
    install = [*apt, "install", "-y", "--no-install-recommends", *BASE_PACKAGES]
    run_checked(["chroot", str(root), *install], env=chroot_env)
    run_checked(["chroot", str(root), *apt, "clean"], env=chroot_env)
    shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
    # pip may install into this image's Python, as into python:3.11-slim's.
    for marker in root.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
        marker.unlink()
    # The Dockerfiles call `python` and `pip`, as python:3.11-slim names them.
    for name, target in (("python", "/usr/bin/python3"), ("pip", "/usr/bin/pip3")):
        link = root / "usr/local/bin" / name
        link.unlink(missing_ok=True)
        link.symlink_to(target)


def base_key(mirror: str) -> str:
    recipe = json.dumps(
        [inspect.getsource(_make_base_tree), SUITE, BASE_PACKAGES, mirror, BASE_CHANGES]
    )
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


BASE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)


def ensure_base(eng: Engine) -> str:
    """The local base image, from the store, else from the cached tarball, else made."""
    mirror = debian_mirror()
    key = base_key(mirror)
    reference = f"localhost/rebeam-base:{key}"
    if eng.exists(reference):
        log(f"base image {reference} (cached)")
        return reference
    tarball = CACHE / f"base-{key}.tar"
    if not tarball.exists():
        log(f"making the base image: debootstrap {SUITE} from {mirror} + {' '.join(BASE_PACKAGES)}")
        start = time.monotonic()
        with tempfile.TemporaryDirectory(dir=CACHE, prefix=".base-") as tmp:
            root = Path(tmp) / "root"
            _make_base_tree(root, mirror)
            partial = Path(tmp) / "base.tar"
            run_checked(["tar", "-C", str(root), "--numeric-owner", "-cf", str(partial), "."])
            partial.rename(tarball)  # only a complete tarball is ever in the cache
        log(f"base tree made in {time.monotonic() - start:.0f} s")
    changes = [arg for change in BASE_CHANGES for arg in ("--change", change)]
    eng.run("import", *changes, str(tarball), reference)
    log(f"base image {reference} imported from {tarball}")
    return reference


def run_checked(argv: list[str], env: dict[str, str] | None = None) -> None:
    if subprocess.run(argv, env=env, check=False).returncode != 0:
        raise ImageError(f"`{' '.join(argv)}` failed (output above)")


# --- building ----------------------------------------------------------------------------------


BUILD_STAGE = re.compile(r"^FROM\s+\S+\s+AS\s+build\s*$", re.IGNORECASE | re.MULTILINE)


def build_stage(image: str) -> str | None:
    """The tag of an image's ``build`` stage, if its Dockerfile has one."""
    dockerfile = REPO / "images" / f"{image}.Dockerfile"
    return f"{image}-build" if BUILD_STAGE.search(dockerfile.read_text()) else None


def build(eng: Engine, image: str, build_args: dict[str, str], *, target: str = "") -> None:
    dockerfile = REPO / "images" / f"{image}.Dockerfile"
    tag = eng.name(f"{image}-{target}" if target else image)
    args = ["build", "-f", str(dockerfile), "-t", tag]
    if target:
        args.append(f"--target={target}")
    for key, value in build_args.items():
        args += ["--build-arg", f"{key}={value}"]
    if eng.local:
        # Everything FROM is local; package downloads trust the host's CAs, mounted read-only
        # for the build only (never copied into an image).
        args += ["--pull=never", "--network=host", "--layers"]
        if Path(HOST_CA).exists():
            args += ["-v", f"{HOST_CA}:{HOST_CA}:ro"]
    if eng.command == "podman":
        # Docker reads <Dockerfile>.dockerignore by itself; podman is told.
        args += ["--ignorefile", f"{dockerfile}.dockerignore"]
    start = time.monotonic()
    log(f"building {tag} from {dockerfile.relative_to(REPO)}")
    result = subprocess.run([*eng.argv(*args), str(REPO)], env=eng.environ(), check=False)
    if result.returncode != 0:
        raise ImageError(f"building {tag} from {dockerfile} failed (build output above)")
    log(f"{tag} built in {time.monotonic() - start:.0f} s")


def prune(eng: Engine, keep: list[str]) -> None:
    """Drop what no current image is built on: earlier builds' images and layers, other
    bases. The build steps of the current images stay (they are the layer cache), so the
    store holds about one generation instead of growing with every change of the sources."""
    fmt = "{{.Id}} {{.Parent}}"
    images = eng.run("images", "--all", "--no-trunc", "--format", "{{.ID}}", capture=True)
    ids = {i.removeprefix("sha256:") for i in images.stdout.split()}
    parents: dict[str, str] = {}
    if ids:
        inspected = eng.run("image", "inspect", "--format", fmt, *sorted(ids), capture=True)
        for line in inspected.stdout.splitlines():
            image, _, parent = line.partition(" ")
            parents[image] = parent.strip().removeprefix("sha256:")
    kept: set[str] = set()
    # An image a container still uses cannot be removed (a container left by a test run that
    # was killed, or one of the developer's own): keep it, and what it is built on.
    containers = eng.run("ps", "--all", "--quiet", capture=True).stdout.split()
    in_use = []
    if containers:
        used = eng.run(
            "container", "inspect", "--format", "{{.Image}}", *containers, capture=True, check=False
        )  # one removed meanwhile is no longer in use
        in_use = [i.removeprefix("sha256:") for i in used.stdout.split()]
    for reference in keep:
        image = eng.run("image", "inspect", "--format", "{{.Id}}", reference, capture=True)
        in_use.append(image.stdout.strip())
    for current in in_use:
        while current and current not in kept:
            kept.add(current)
            current = parents.get(current, "")

    def depth(image: str) -> int:
        steps = 0
        while image := parents.get(image, ""):
            steps += 1
        return steps

    stale = sorted(ids - kept, key=depth, reverse=True)  # children before their parents
    if stale:
        eng.run("rmi", *stale, capture=True)
        log(f"removed {len(stale)} images that no current image is built on")
    for tarball in CACHE.glob("base-*.tar"):
        if f"rebeam-base:{tarball.stem.removeprefix('base-')}" not in " ".join(keep):
            tarball.unlink()
            log(f"removed {tarball.name} (another recipe)")


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    """One build at a time per cache: CI and a developer may start one together."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build_all(base: str, command: str | None) -> Engine:
    eng = engine(base, command)
    if eng.local:
        ensure_tools(("podman", "runc", "debootstrap"))
    if not eng.local and shutil.which(eng.command) is None:
        raise ImageError(f"no {eng.command} on PATH: install docker or podman")
    with _lock() if eng.local else contextlib.nullcontext():
        python_image = {"PYTHON_IMAGE": ensure_base(eng)} if eng.local else {}
        build_args = {"operator": python_image, "actor": python_image}
        build_args["demo"] = {"BASE": eng.name("actor")}
        keep = [*python_image.values()]
        for image in IMAGES:
            if eng.local and (stage := build_stage(image)):
                # Tagged, so that pruning keeps it: it is the layer cache of the pip steps.
                build(eng, image, build_args[image], target="build")
                keep.append(eng.name(stage))
            build(eng, image, build_args[image])
            keep.append(eng.name(image))
        if eng.local:  # only in our own store: a user's engine is theirs to prune
            prune(eng, keep)
    for image in IMAGES:
        log(f"{eng.name(image):<32} {eng.size(eng.name(image)) / 1e6:8.1f} MB")
    return eng


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--base",
        choices=("local", "registry"),
        default=os.environ.get("REBEAM_IMAGES_BASE") or default_base(),
        help="local: a Debian base made here, podman with its own store (needs root); "
        "registry: python:3.11-slim from a registry (default: local as root)",
    )
    parser.add_argument(
        "--engine",
        choices=("podman", "docker"),
        default=os.environ.get("REBEAM_IMAGES_ENGINE"),
        help="with --base registry (default: podman if installed, else docker)",
    )
    args = parser.parse_args(argv)
    try:
        build_all(args.base, args.engine)
    except ImageError as exc:
        print(f"images: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

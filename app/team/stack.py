"""The team's stack on one machine: every step in its own container (ZenML's ``local_docker``
orchestrator, step images built by ZenML from the project's ``deps`` image with the code copied in
fresh), an MLflow server on PostgreSQL behind MLflow's basic-auth app as tracking store and
registry, and no disk shared between steps but the artifact store (``paths.handoff=artifact_store``).

``scripts/team_stack.sh up | run | down | check | status``. Everything lives under ``TEAM_HOME``
(default ``./state-team``) and in images and containers this module names, so ``down`` leaves
nothing behind. Credentials come from the environment only (``MLFLOW_TRACKING_USERNAME``,
``MLFLOW_TRACKING_PASSWORD``, ``TEAM_DB_PASSWORD``); the steps get them from ZenML's secret store,
never from a URI, a config file or a run configuration. Each failure is one line naming the
component and the fix (``TeamStackError``)."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from dcjt.utils.state import REPO_ROOT

BASE_TAG = "dcjt-base:bookworm"  # made here from Debian's packages (debootstrap)
DEPS_REPO = "dcjt-cpu-deps"  # docker/Dockerfile.cpu --target deps: ZenML's parent image
STEP_REPO = "dcjt-team-steps"  # ZenML's step images (DockerSettings.target_repository)
RUN_CONFIG = REPO_ROOT / "configs" / "team-docker.yaml"
STACK, ORCHESTRATOR, BUILDER, SECRET = "dcjt-team", "dcjt-docker", "dcjt-builder", "dcjt-mlflow"
PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PYPI = "https://pypi.org/simple"
CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "TEAM_DB_PASSWORD")
# The code a step image must carry, compared file by file with the working tree.
CODE_FOLDERS = ("app", "dcjt", "pipelines", "steps")


class TeamStackError(RuntimeError):
    """A component of the team stack is missing, down or refuses; one line with the fix."""


@dataclass
class Settings:
    home: Path = field(default_factory=lambda: Path(os.environ.get("TEAM_HOME", REPO_ROOT / "state-team")).resolve())
    mlflow_port: int = field(default_factory=lambda: int(os.environ.get("TEAM_MLFLOW_PORT", "5055")))
    pg_port: int = field(default_factory=lambda: int(os.environ.get("TEAM_PG_PORT", "5433")))
    base_image: str = field(default_factory=lambda: os.environ.get("BASE_IMAGE", BASE_TAG))
    torch_index: str | None = field(default_factory=lambda: os.environ.get("TORCH_INDEX_URL"))

    @property
    def dcjt_home(self) -> Path:  # the run's DCJT_HOME: ZenML's store and its local artifact store
        return self.home / "home"

    @property
    def pg_data(self) -> Path:
        return self.home / "pg"

    def env(self, bridge: str) -> dict[str, str]:
        """The environment of a run on this stack (the client side; the steps get the same URI
        from the orchestrator's environment and the credentials from ZenML's secret)."""
        return {
            "DCJT_HOME": str(self.dcjt_home),
            "ZENML_CONFIG_PATH": str(self.dcjt_home / "zenml"),
            "MLFLOW_TRACKING_URI": f"http://{bridge}:{self.mlflow_port}",
        }


def say(line: str) -> None:
    print(f"[team-stack] {line}", flush=True)


def sh(cmd: list[str], *, component: str, fix: str, env: dict | None = None, quiet: bool = True, **kw) -> str:
    """Run ``cmd``; a failure is one line naming the component, the command's last words and the fix."""
    try:
        out = subprocess.run(cmd, check=True, text=True, capture_output=quiet, env=env, **kw)
    except FileNotFoundError:
        raise TeamStackError(f"{component}: {cmd[0]} is not installed ({fix})") from None
    except subprocess.CalledProcessError as exc:
        said = [x for x in (exc.stderr or exc.stdout or "").splitlines() if x.strip()]
        last = said[-1].strip() if said else f"exit {exc.returncode}"
        raise TeamStackError(f"{component}: {Path(cmd[0]).name} failed: {last[:300]} ({fix})") from None
    return out.stdout or "" if quiet else ""


# --- Docker ---------------------------------------------------------------------------------------


def docker_engine():
    """The Docker engine, or one line saying it is missing or not running."""
    if shutil.which("docker") is None and not Path("/usr/bin/docker").exists():
        raise TeamStackError("Docker: not installed (apt-get install docker.io, then start dockerd)")
    from app.preflight import PreflightError
    from app.preflight import docker_engine as engine

    try:
        return engine()
    except PreflightError as exc:
        raise TeamStackError(str(exc)) from None


def buildkit_cli() -> tuple[list[str], dict[str, str]]:
    """A docker command that builds with BuildKit (the images' optional secrets need it): the
    buildx plugin, else Debian's docker.io client, which has BuildKit built in."""
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    if subprocess.run(["docker", "buildx", "version"], capture_output=True).returncode == 0:
        return ["docker", "buildx", "build", "--load"], env
    for client in ("/usr/bin/docker", "docker"):
        probe = subprocess.run([client, "build", "-q", "-"], input=b"FROM scratch\n", capture_output=True, env=env)
        if probe.returncode == 0 or b"no build stage" in probe.stderr or b"empty" in probe.stderr.lower():
            return [client, "build"], env
    raise TeamStackError(
        "Docker BuildKit: neither the buildx plugin nor a client with BuildKit built in "
        "(install docker-buildx, or Debian's docker.io)"
    )


def bridge_address(client) -> str:
    """The default bridge's gateway: the address at which both this machine and the step
    containers reach the MLflow server, so one tracking URI serves both."""
    import ipaddress

    config = client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    # Docker's default: the subnet's first host address when no gateway is configured.
    return config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


def image_exists(client, name: str) -> bool:
    import docker

    try:
        client.images.get(name)
        return True
    except docker.errors.ImageNotFound:
        return False


def build_base(client, settings: Settings) -> float:
    """The Debian base from Debian's packages (no registry pull): debootstrap, then docker import.
    Returns the seconds it took (0 when the image is there)."""
    if image_exists(client, settings.base_image):
        return 0.0
    if settings.base_image != BASE_TAG:
        try:
            client.images.pull(settings.base_image)
            return 0.0
        except Exception as exc:
            raise TeamStackError(
                f"base image {settings.base_image}: not on this machine and cannot be pulled ({type(exc).__name__}); "
                f"pull or load it, or unset BASE_IMAGE to build {BASE_TAG} from Debian's packages"
            ) from None
    t0 = time.perf_counter()
    rootfs = settings.home / "base-rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    rootfs.parent.mkdir(parents=True, exist_ok=True)
    say(f"building {BASE_TAG} from Debian's packages (debootstrap, a few minutes)")
    include = "python3,python3-venv,ca-certificates,libgl1,libglib2.0-0"
    mirror = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
    sh(
        ["debootstrap", "--variant=minbase", f"--include={include}", "bookworm", str(rootfs), mirror],
        component="base image (debootstrap)",
        fix=f"apt-get install debootstrap; DEBIAN_MIRROR={mirror} must answer",
    )
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    sh(["docker", "import", "-", BASE_TAG], component="base image (docker import)", fix="is dockerd running?", stdin=tar.stdout)
    tar.wait()
    shutil.rmtree(rootfs, ignore_errors=True)
    return time.perf_counter() - t0


def torch_index(settings: Settings) -> str:
    """Where torch comes from: TORCH_INDEX_URL, else PyTorch's CPU index, else PyPI (a CUDA
    build: the same wheel the README's setup installs on this kind of machine)."""
    if settings.torch_index:
        return settings.torch_index
    try:
        urllib.request.urlopen(f"{PYTORCH_CPU_INDEX}/torch/", timeout=10)
        return PYTORCH_CPU_INDEX
    except (urllib.error.URLError, OSError):
        say(f"{PYTORCH_CPU_INDEX} is unreachable: torch comes from PyPI (its CUDA build, larger image)")
        return PYPI


def local_pins(folder: Path) -> Path:
    """The local environment's versions as pip constraints, so the image computes what a run in
    one process computes."""
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"], check=True, capture_output=True, text=True
    )
    lines = [x for x in frozen.stdout.splitlines() if "==" in x and " @ " not in x and not x.startswith("dcjt-fer==")]
    path = folder / "pins.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def ca_bundle() -> Path | None:
    """An extra CA bundle for the build (networks that inspect TLS): TEAM_CA_BUNDLE, else the one
    pip uses here (PIP_CERT, or ``cert`` in ``pip config list``)."""
    given = os.environ.get("TEAM_CA_BUNDLE")
    if given and not Path(given).is_file():
        raise TeamStackError(f"TEAM_CA_BUNDLE={given}: no such file")
    candidates = [given, os.environ.get("PIP_CERT")]
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    candidates += [line.split("=", 1)[1].strip("'\"") for line in listed.splitlines() if line.split("=", 1)[0].endswith(".cert")]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


def deps_tag(settings: Settings, index: str, pins: Path) -> str:
    """The deps image's tag: a digest of what goes into it (a change rebuilds, nothing else does)."""
    h = hashlib.sha256()
    for part in (REPO_ROOT / "docker" / "Dockerfile.cpu", REPO_ROOT / "pyproject.toml", pins):
        h.update(part.read_bytes())
    h.update(f"{settings.base_image}\n{index}".encode())
    return f"{DEPS_REPO}:{h.hexdigest()[:12]}"


def build_deps(settings: Settings, *, no_cache: bool = False) -> tuple[str, float]:
    """docker/Dockerfile.cpu's ``deps`` stage on the base; (tag, seconds)."""
    cli, env = buildkit_cli()
    index = torch_index(settings)
    work = settings.home / "build"
    work.mkdir(parents=True, exist_ok=True)
    pins = local_pins(work)
    tag = deps_tag(settings, index, pins)
    cmd = [*cli, "-f", "docker/Dockerfile.cpu", "--target", "deps", "-t", tag, "-t", f"{DEPS_REPO}:team"]
    cmd += ["--build-arg", f"BASE_IMAGE={settings.base_image}", "--build-arg", f"TORCH_INDEX_URL={index}"]
    cmd += ["--secret", f"id=pins,src={pins}", "--build-arg", f"PINS_DIGEST={hashlib.sha256(pins.read_bytes()).hexdigest()[:16]}"]
    ca = ca_bundle()
    if ca:
        cmd += ["--secret", f"id=ca,src={ca}"]
    if no_cache:
        cmd.append("--no-cache")
    t0 = time.perf_counter()
    log = work / "deps-build.log"
    with open(log, "w") as fh:
        done = subprocess.run([*cmd, "."], cwd=REPO_ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
        raise TeamStackError(f"deps image ({tag}): docker build failed: {tail[0][:300]} (full log: {log})")
    return tag, time.perf_counter() - t0


def image_size_mb(client, name: str) -> float:
    return client.images.get(name).attrs["Size"] / 1e6


# --- PostgreSQL -----------------------------------------------------------------------------------


def pg_bin(name: str) -> str:
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / name).exists():
            return str(folder / name)
    found = shutil.which(name)
    if found is None:
        raise TeamStackError(f"PostgreSQL: {name} not found (apt-get install postgresql)")
    return found


def as_db_owner(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its commands as the ``postgres`` user."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def postgres_up(settings: Settings) -> None:
    """A PostgreSQL cluster in TEAM_HOME, on 127.0.0.1 only: role ``mlflow`` (password from
    TEAM_DB_PASSWORD), databases ``mlflow`` (runs, registry) and ``mlflow_auth`` (users)."""
    data = settings.pg_data
    fix = "apt-get install postgresql"
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
        sh(
            as_db_owner(
                [
                    pg_bin("initdb"),
                    "-D",
                    str(data),
                    "-A",
                    "peer",
                    "-U",
                    "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres"),
                ]
            ),
            component="PostgreSQL (initdb)",
            fix=fix,
        )
        (data / "pg_hba.conf").write_text("local all all peer\nhost mlflow,mlflow_auth mlflow 127.0.0.1/32 scram-sha-256\n")
    if (
        subprocess.run([pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(settings.pg_port)], capture_output=True).returncode
        != 0
    ):
        opts = f"-c listen_addresses=127.0.0.1 -c port={settings.pg_port} -c unix_socket_directories={data}"
        sh(
            as_db_owner([pg_bin("pg_ctl"), "-D", str(data), "-o", opts, "-l", str(data / "server.log"), "-w", "start"]),
            component="PostgreSQL (pg_ctl start)",
            fix=f"see {data / 'server.log'}; is port {settings.pg_port} free? (TEAM_PG_PORT)",
        )
    sql = (
        "\\getenv pw TEAM_DB_PASSWORD\n"
        "SELECT 'CREATE ROLE mlflow LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mlflow')\\gexec\n"
        "ALTER ROLE mlflow PASSWORD :'pw';\n"
        "SELECT 'CREATE DATABASE mlflow OWNER mlflow'\n"
        "  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'mlflow')\\gexec\n"
        "SELECT 'CREATE DATABASE mlflow_auth OWNER mlflow'\n"
        "  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'mlflow_auth')\\gexec\n"
    )
    sh(
        as_db_owner(
            [pg_bin("psql"), "-v", "ON_ERROR_STOP=1", "-q", "-h", str(data), "-p", str(settings.pg_port), "-d", "postgres"]
        ),
        component="PostgreSQL (roles and databases)",
        fix="see the server log in TEAM_HOME/pg",
        input=sql,
    )


def postgres_down(settings: Settings) -> None:
    if (settings.pg_data / "postmaster.pid").exists():
        subprocess.run(
            as_db_owner([pg_bin("pg_ctl"), "-D", str(settings.pg_data), "-m", "fast", "-w", "stop"]), capture_output=True
        )


# --- MLflow server --------------------------------------------------------------------------------


def credentials() -> dict[str, str]:
    missing = [k for k in CREDENTIALS if not os.environ.get(k)]
    if missing:
        raise TeamStackError(f"credentials: set {', '.join(missing)} in the environment (never in a URI or a file)")
    return {k: os.environ[k] for k in CREDENTIALS}


def mlflow_up(settings: Settings, bridge: str) -> str:
    """``mlflow server`` on PostgreSQL with served artifacts and the basic-auth app, listening on
    the bridge address only; returns its URI once it answers with these credentials."""
    uri = f"http://{bridge}:{settings.mlflow_port}"
    pidfile = settings.home / "mlflow.pid"
    proc = None
    if not _alive(pidfile):
        db = f"postgresql://mlflow@127.0.0.1:{settings.pg_port}"
        ini = settings.home / "basic_auth.ini"  # no secret in it: the admin comes from the environment
        ini.write_text(
            f"[mlflow]\ndefault_permission = NO_PERMISSIONS\ndatabase_uri = {db}/mlflow_auth\nadmin_username = admin\n"
        )
        env = {
            **os.environ,
            "PGPASSWORD": os.environ["TEAM_DB_PASSWORD"],
            "MLFLOW_AUTH_CONFIG_PATH": str(ini),
            "MLFLOW_AUTH_ADMIN_USERNAME": os.environ["MLFLOW_TRACKING_USERNAME"],
            "MLFLOW_AUTH_ADMIN_PASSWORD": os.environ["MLFLOW_TRACKING_PASSWORD"],
            "MLFLOW_FLASK_SERVER_SECRET_KEY": os.environ.get("TEAM_SERVER_SECRET_KEY") or secrets.token_hex(32),
        }
        cmd = [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", f"{db}/mlflow"]
        cmd += ["--artifacts-destination", str(settings.home / "mlartifacts"), "--serve-artifacts"]
        cmd += ["--app-name", "basic-auth", "--host", bridge, "--port", str(settings.mlflow_port), "--workers", "2"]
        log = open(settings.home / "mlflow-server.log", "w")
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=settings.home)
        pidfile.write_text(str(proc.pid))
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=3)
            break
        except (urllib.error.URLError, OSError):
            if proc is not None and proc.poll() is not None:
                lines = (settings.home / "mlflow-server.log").read_text().strip().splitlines() or ["(no output)"]
                raise TeamStackError(
                    f"MLflow server: exited at start ({lines[-1][:200]}); see {settings.home / 'mlflow-server.log'}"
                ) from None
            if not _alive(pidfile):
                raise TeamStackError(f"MLflow server: exited at start; see {settings.home / 'mlflow-server.log'}") from None
            time.sleep(1)
    else:
        raise TeamStackError(f"MLflow server {uri}: no answer in 120 s; see {settings.home / 'mlflow-server.log'}")
    check_mlflow_credentials(uri)
    return uri


def check_mlflow_credentials(uri: str) -> None:
    """The server answers, takes the account and reaches PostgreSQL (the runs' own preflight)."""
    from app.preflight import PreflightError, check_tracking_server

    try:
        check_tracking_server(uri)
    except PreflightError as exc:
        raise TeamStackError(str(exc)) from None


def _alive(pidfile: Path) -> bool:
    if not pidfile.exists():
        return False
    try:
        os.kill(int(pidfile.read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


def mlflow_down(settings: Settings) -> None:
    pidfile = settings.home / "mlflow.pid"
    if _alive(pidfile):
        pid = int(pidfile.read_text())
        os.killpg(pid, signal.SIGTERM)
        for _ in range(50):
            if not _alive(pidfile):
                break
            time.sleep(0.2)
        else:
            os.killpg(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)


# --- ZenML ----------------------------------------------------------------------------------------


def register_stack(settings: Settings, uri: str) -> None:
    """The team's ZenML stack in TEAM_HOME's store, registered in a process of its own (ZenML
    reads its store's location once, at import): see ``_register``."""
    env = {**os.environ, **settings.env(uri.split("//")[1].split(":")[0]), "ZENML_ANALYTICS_OPT_IN": "false"}
    settings.dcjt_home.mkdir(parents=True, exist_ok=True)
    sh(
        [sys.executable, "-m", "app.team.cli", "_register", uri],
        component="ZenML stack",
        fix="see ZenML's message",
        env=env,
        cwd=REPO_ROOT,
    )


def _register(uri: str) -> None:
    """local_docker orchestrator (the tracking URI in its environment), local image builder, the
    local artifact store (the only thing the step containers share), the MLflow credentials as a
    ZenML secret attached to the stack (the steps get them as environment variables)."""
    from zenml.client import Client
    from zenml.enums import StackComponentType as T

    c = Client()
    values = {k: os.environ[k] for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    try:
        c.update_secret(SECRET, add_or_update_values=values)
    except KeyError:
        c.create_secret(SECRET, values=values)
    names = {x.name for x in c.list_stack_components(size=100).items}
    if ORCHESTRATOR not in names:
        c.create_stack_component(ORCHESTRATOR, "local_docker", T.ORCHESTRATOR, {}, environment={"MLFLOW_TRACKING_URI": uri})
    if BUILDER not in names:
        c.create_stack_component(BUILDER, "local", T.IMAGE_BUILDER, {})
    if STACK not in {s.name for s in c.list_stacks(size=100).items}:
        components = {T.ORCHESTRATOR: ORCHESTRATOR, T.ARTIFACT_STORE: "default", T.IMAGE_BUILDER: BUILDER}
        c.create_stack(STACK, components=components, secrets=[SECRET])
    c.activate_stack(STACK)


# --- up / run / down ------------------------------------------------------------------------------


@dataclass
class Up:
    uri: str
    bridge: str
    deps_image: str
    base_seconds: float
    deps_seconds: float


def up(settings: Settings) -> Up:
    credentials()
    client = docker_engine()
    settings.home.mkdir(parents=True, exist_ok=True)
    bridge = bridge_address(client)
    base_seconds = build_base(client, settings)
    say(f"base image {settings.base_image}" + (f" built in {base_seconds:.0f} s" if base_seconds else " present"))
    deps, deps_seconds = build_deps(settings)
    say(f"deps image {deps} built in {deps_seconds:.0f} s ({image_size_mb(client, deps):.0f} MB)")
    postgres_up(settings)
    say(f"PostgreSQL on 127.0.0.1:{settings.pg_port} ({settings.pg_data})")
    uri = mlflow_up(settings, bridge)
    say(f"MLflow server {uri} (PostgreSQL backend, served artifacts, basic auth)")
    register_stack(settings, uri)
    say(f"ZenML stack {STACK} active in {settings.dcjt_home / 'zenml'}")
    return Up(uri, bridge, deps, base_seconds, deps_seconds)


def run(settings: Settings, args: list[str]) -> subprocess.CompletedProcess:
    """The main job (``run.py demo`` plus ``args``) on the team stack; its output streams through."""
    credentials()
    client = docker_engine()
    bridge = bridge_address(client)
    if not image_exists(client, f"{DEPS_REPO}:team"):
        raise TeamStackError(f"deps image {DEPS_REPO}:team: missing; run scripts/team_stack.sh up first")
    if not _alive(settings.home / "mlflow.pid"):
        raise TeamStackError("MLflow server: not running; run scripts/team_stack.sh up first")
    env = {**os.environ, **settings.env(bridge)}
    cmd = [sys.executable, "run.py", "demo", "--set", "paths.handoff=artifact_store", "--run-config", str(RUN_CONFIG), *args]
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env)


def down(settings: Settings, *, keep_images: bool = False) -> None:
    """Stop the server and the database, remove the state folder, the step containers and (unless
    ``keep_images``) every image the stack built."""
    mlflow_down(settings)
    postgres_down(settings)
    try:
        client = docker_engine()
    except TeamStackError:
        client = None
    if client is not None:
        ours = _image_family(client)
        for c in client.containers.list(all=True):  # step containers, and any a build left
            if _descends(client, c.attrs.get("Image", ""), ours):
                c.remove(force=True)
        if not keep_images:  # children first: step images, then the deps image, then the base
            for repo in (STEP_REPO, DEPS_REPO, BASE_TAG.split(":")[0]):
                for image in client.images.list(name=repo):
                    for tag in image.tags:
                        client.images.remove(tag, force=True)
            client.images.prune(filters={"dangling": True})
            subprocess.run(["docker", "builder", "prune", "-af"], capture_output=True)
    if settings.home.exists():
        shutil.rmtree(settings.home)
    say(
        "down: server and database stopped, "
        + ("images kept, " if keep_images else "images removed, ")
        + f"{settings.home} removed"
    )


def _image_family(client) -> set[str]:
    """The ids of the stack's tagged images (step, deps, base)."""
    return {image.id for repo in (STEP_REPO, DEPS_REPO, BASE_TAG.split(":")[0]) for image in client.images.list(name=repo)}


def _descends(client, image_id: str, ours: set[str]) -> bool:
    """Whether an image is one of ``ours`` or was built on one (a step image of an earlier build,
    a build's layer), by its parent chain."""
    seen = set()
    while image_id and image_id not in seen:
        if image_id in ours:
            return True
        seen.add(image_id)
        try:
            image_id = client.api.inspect_image(image_id).get("Parent") or ""
        except Exception:
            return False
    return False


def status(settings: Settings) -> dict:
    return {
        "home": str(settings.home),
        "mlflow_server": _alive(settings.home / "mlflow.pid"),
        "postgres": (settings.pg_data / "postmaster.pid").exists(),
    }


def code_digest(root: Path) -> str:
    """A digest of the project's code files under ``root`` (what a step image must carry)."""
    h = hashlib.sha256()
    for folder in CODE_FOLDERS:
        for path in sorted((root / folder).rglob("*.py")):
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def step_images(client) -> list[str]:
    return sorted(t for image in client.images.list(name=STEP_REPO) for t in image.tags)


def image_code_digest(client, image: str) -> str:
    script = (
        "import hashlib, pathlib; h = hashlib.sha256(); r = pathlib.Path('/app')\n"
        f"for f in {CODE_FOLDERS!r}:\n"
        "    for p in sorted((r / f).rglob('*.py')): h.update(str(p.relative_to(r)).encode() + b'\\0' + p.read_bytes())\n"
        "print(h.hexdigest())"
    )
    out = client.containers.run(image, ["python", "-c", script], entrypoint=[], remove=True)
    return out.decode().strip()

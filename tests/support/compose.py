"""Test support: read docker-compose.yml and deploy/Dockerfile as Docker Compose would, and run the application
services they describe as local processes, so the compose file is proven on a machine without a Docker engine.

What Compose does and this module does too: YAML anchors and `<<` merges, `${VAR}` interpolation with the
`:-`, `-`, `:?`, `?`, `:+`, `+` forms and `$$` escapes, `depends_on` with its three conditions, and health
checks run as the file writes them. What a container gives and a local process cannot have is mapped, and
only that: host names (to the test's broker and PostgreSQL), container paths (to a directory per service, as
each container has its own filesystem) and listening ports (one free port per service, as each container has
its own network namespace; health checks are rewritten for that mapping only)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.engine import make_url

from services.common.settings import Settings
from tests.support.stack import ROOT, Service, Stack, free_port, wait_until

COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"

# The setting through which each salespulse command takes its listening port (README, "Configuration").
PORT_VARIABLES = {
    "api": "SALESPULSE_API_PORT",
    "ingest": "SALESPULSE_INGEST_PORT",
    "relay": "SALESPULSE_RELAY_PORT",
    "notifier": "SALESPULSE_NOTIFIER_PORT",
    "scoring": "SALESPULSE_SCORING_WEB_PORT",
}
# Settings that name another compose service by host, with the setting of its port: the service runs here on
# 127.0.0.1 and the port mapped to it.
SERVICE_HOSTS = {"SALESPULSE_RELAY_HOST": "SALESPULSE_RELAY_PORT"}
LOOPBACK_PORT = re.compile(r"\b(?:127\.0\.0\.1|localhost):(\d+)\b")


class ComposeError(ValueError):
    """The compose file cannot be read the way Docker Compose reads it."""


# --- interpolation ------------------------------------------------------------------------------------------

_NAME = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
_BRACED = re.compile(r"(?P<name>[_a-zA-Z][_a-zA-Z0-9]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?", re.S)


def interpolate(value: Any, variables: Mapping[str, str], where: str = "") -> Any:
    """A copy of `value` with every string interpolated (Compose interpolates values, never keys)."""
    if isinstance(value, str):
        return interpolate_text(value, variables, where)
    if isinstance(value, dict):
        return {key: interpolate(item, variables, f"{where}.{key}".lstrip(".")) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, variables, f"{where}[{i}]") for i, item in enumerate(value)]
    return value


def interpolate_text(text: str, variables: Mapping[str, str], where: str = "") -> str:
    """`$$` is a literal `$`; `$NAME` and `${...}` are substituted; anything else after a `$` is an error."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] != "$":
            out.append(text[i])
            i += 1
            continue
        following = text[i + 1 : i + 2]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "{":
            end = _closing_brace(text, i + 1, where)
            out.append(_substitute(text[i + 2 : end], variables, where))
            i = end + 1
        elif name := _NAME.match(text, i + 1):
            out.append(variables.get(name.group(), ""))
            i = name.end()
        else:
            raise ComposeError(f"{where}: invalid interpolation format in {text!r}; write $$ for a literal $")
    return "".join(out)


def _closing_brace(text: str, start: int, where: str) -> int:
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return i
    raise ComposeError(f"{where}: unclosed ${{ in {text!r}")


def _substitute(expression: str, variables: Mapping[str, str], where: str) -> str:
    match = _BRACED.fullmatch(expression)
    if not match:
        raise ComposeError(f"{where}: invalid interpolation ${{{expression}}}")
    name, op, arg = match.group("name", "op", "arg")
    value = variables.get(name)
    if op is None:
        return value or ""
    absent = value is None or (op.startswith(":") and value == "")
    if op.endswith("-"):
        return interpolate_text(arg, variables, where) if absent else str(value)
    if op.endswith("+"):
        return "" if absent else interpolate_text(arg, variables, where)
    if absent:  # `?`: a required variable
        raise ComposeError(f"{where}: required variable {name} is missing a value: {interpolate_text(arg, variables)}")
    return str(value)


# --- the compose file ---------------------------------------------------------------------------------------


def parse_duration(text: str | int | float | None, default: float) -> float:
    """A Compose duration such as `5s`, `1m30s` or `500ms`, in seconds."""
    if text is None:
        return default
    if isinstance(text, int | float):
        return float(text)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ComposeError(f"{text!r} is not a duration such as 5s or 1m30s")
    return sum(float(number) * units[unit] for number, unit in parts)


@dataclass(frozen=True)
class ComposeService:
    name: str
    spec: dict[str, Any]

    @property
    def dockerfile(self) -> str | None:
        build = self.spec.get("build")
        if build is None:
            return None
        if isinstance(build, str):
            return "Dockerfile"
        return str(build.get("dockerfile", "Dockerfile"))

    @property
    def command(self) -> list[str]:
        command = self.spec.get("command") or []
        return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]

    @property
    def environment(self) -> dict[str, str]:
        """The environment as strings; a name without a value takes none (Compose would take the shell's)."""
        raw = self.spec.get("environment") or {}
        if isinstance(raw, list):
            raw = dict(item.split("=", 1) if "=" in item else (item, None) for item in raw)
        return {key: _env_text(value) for key, value in raw.items() if value is not None}

    @property
    def depends_on(self) -> dict[str, str]:
        raw = self.spec.get("depends_on") or {}
        if isinstance(raw, list):
            return {name: "service_started" for name in raw}
        return {name: entry.get("condition", "service_started") for name, entry in raw.items()}

    @property
    def healthcheck(self) -> list[str] | None:
        """The health check as an argv (`CMD-SHELL` and a plain string run under /bin/sh), or None."""
        check = self.spec.get("healthcheck") or {}
        test = check.get("test")
        if check.get("disable") or not test or test == ["NONE"]:
            return None
        if isinstance(test, str):
            return ["/bin/sh", "-c", test]
        if test[0] == "CMD-SHELL":
            return ["/bin/sh", "-c", test[1]]
        if test[0] == "CMD":
            return [str(part) for part in test[1:]]
        raise ComposeError(f"{self.name}: healthcheck test must start with CMD or CMD-SHELL, not {test[0]!r}")

    @property
    def health_deadline(self) -> float:
        """How long Compose waits before it calls the service unhealthy: start period + interval × retries."""
        check = self.spec.get("healthcheck") or {}
        interval = parse_duration(check.get("interval"), 30.0)
        return parse_duration(check.get("start_period"), 0.0) + interval * int(check.get("retries", 3))


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass
class ComposeFile:
    document: dict[str, Any]

    @classmethod
    def load(cls, variables: Mapping[str, str], path: Path = COMPOSE_FILE) -> ComposeFile:
        """Parse (anchors and merges resolved by YAML) and interpolate with `variables` only."""
        return cls(interpolate(yaml.safe_load(path.read_text()), variables))

    @property
    def services(self) -> dict[str, ComposeService]:
        return {name: ComposeService(name, spec) for name, spec in self.document["services"].items()}

    def built_from(self, dockerfile: str) -> list[str]:
        return [name for name, service in self.services.items() if service.dockerfile == dockerfile]

    def start_order(self, names: list[str]) -> list[str]:
        """`names` in an order where every service comes after what it depends on (file order otherwise)."""
        services = self.services
        order: list[str] = []
        visiting: set[str] = set()

        def visit(name: str) -> None:
            if name in order or name not in names:
                return
            if name in visiting:
                raise ComposeError(f"depends_on has a cycle through {name}")
            visiting.add(name)
            for dependency in services[name].depends_on:
                visit(dependency)
            visiting.discard(name)
            order.append(name)

        for name in names:
            visit(name)
        return order


# --- the Dockerfile -----------------------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [text for kw, text in self.instructions if kw == keyword]

    @property
    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for text in self.args("ENV"):
            tokens = shlex.split(text)
            if "=" in tokens[0]:
                env.update(token.split("=", 1) for token in tokens)
            else:  # the legacy `ENV NAME value with spaces` form
                env[tokens[0]] = text.split(None, 1)[1]
        return env

    def exec_form(self, keyword: str) -> list[str] | None:
        """The last ENTRYPOINT or CMD in JSON (exec) form; a shell form runs under /bin/sh -c."""
        found = self.args(keyword)
        if not found:
            return None
        text = found[-1].strip()
        return [str(part) for part in json.loads(text)] if text.startswith("[") else ["/bin/sh", "-c", text]

    @property
    def user(self) -> str | None:
        users = self.args("USER")
        return users[-1].strip() if users else None


@dataclass
class Dockerfile:
    stages: list[Stage]

    @classmethod
    def parse(cls, path: Path = DOCKERFILE) -> Dockerfile:
        lines: list[str] = []
        pending = ""
        for raw in path.read_text().splitlines():
            stripped = raw.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if stripped.endswith("\\"):
                pending += stripped[:-1] + " "
                continue
            lines.append(pending + stripped)
            pending = ""
        stages: list[Stage] = []
        for line in lines:
            keyword, _, rest = line.partition(" ")
            keyword = keyword.upper()
            if keyword == "FROM":
                parts = rest.split()
                stages.append(Stage(parts[0], parts[2] if len(parts) > 2 and parts[1].upper() == "AS" else None))
            elif not stages:
                raise ComposeError(f"{path}: {keyword} before the first FROM")
            else:
                stages[-1].instructions.append((keyword, rest.strip()))
        return cls(stages)

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        return next(stage for stage in self.stages if stage.name == name)


@dataclass
class Image:
    """What `docker build` makes of deploy/Dockerfile, rebuilt in a directory: the build stage's COPY and RUN
    steps run with container paths mapped under `root`, and the final stage's `COPY --from` names the prefix."""

    dockerfile: Dockerfile
    root: Path
    prefix: Path

    @property
    def site_packages(self) -> Path:
        return self.prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"

    @property
    def bin(self) -> Path:
        return self.prefix / "bin"

    @classmethod
    def build(cls, root: Path, dockerfile: Dockerfile | None = None, context: Path = ROOT) -> Image:
        dockerfile = dockerfile or Dockerfile.parse()
        copy_from = [text.split() for text in dockerfile.final.args("COPY") if text.startswith("--from=")]
        if len(copy_from) != 1:
            raise ComposeError("the final stage should take exactly one COPY --from=<build stage>")
        flag, source, _target = copy_from[0]
        _build_stage(dockerfile.stage(flag.split("=", 1)[1]), root, context)
        return cls(dockerfile, root, root / source.lstrip("/"))


def _build_stage(stage: Stage, root: Path, context: Path) -> None:
    workdir = root
    venv_bin = Path(sys.executable).parent  # `pip` and `python` of the image are this interpreter's
    for keyword, text in stage.instructions:
        if keyword == "WORKDIR":
            workdir = root / text.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            *sources, target = text.split()
            destination = workdir / target if not target.startswith("/") else root / target.lstrip("/")
            for source in sources:
                origin = context / source
                if origin.is_dir():
                    shutil.copytree(origin, destination, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
                        "__pycache__", "*.pyc"))
                else:
                    destination.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, destination / origin.name)
        elif keyword == "RUN":
            command = re.sub(r"(?<=[=\s])/(?=\w)", f"{root}/", text)  # absolute container paths under root
            done = subprocess.run(["/bin/sh", "-c", command], cwd=workdir, capture_output=True, text=True,
                                  env={"PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin", "HOME": str(root),
                                       # The image's pip starts from an empty site-packages; this one has the
                                       # project installed (editable), which `pip install --prefix` would
                                       # otherwise uninstall from the test's own environment.
                                       "PIP_IGNORE_INSTALLED": "1"})
            if done.returncode:
                output = done.stdout[-3000:] + done.stderr[-3000:]
                raise ComposeError(f"RUN {text} failed ({done.returncode}):\n{output}")
            if not (venv_bin / "salespulse").exists():
                raise ComposeError(f"RUN {text} removed the project from the test's environment ({venv_bin})")
        elif keyword not in {"ENV", "ARG", "LABEL"}:
            raise ComposeError(f"the build stage uses {keyword}, which this test does not know how to run")


# --- running the services -----------------------------------------------------------------------------------


def container_port(service: ComposeService, image_env: Mapping[str, str]) -> int | None:
    """The port a salespulse service listens on inside its container: its port variable as the image and the
    service set it, else the setting's default; None for a command that listens on nothing."""
    variable = PORT_VARIABLES.get(service.command[0]) if service.command else None
    if variable is None:
        return None
    value = {**image_env, **service.environment}.get(variable)
    default = Settings.model_fields[variable.removeprefix("SALESPULSE_").lower()].default
    return int(value if value is not None else default)



@dataclass
class ComposeStack(Stack):
    """The application services of a compose file as local processes. `provided` names the infrastructure
    services the test brings up itself (kafka, postgres); `addresses` maps their `host:port` to this machine's
    and `databases` maps a database host to the URL of a fresh database (the file's driver is kept)."""

    compose: ComposeFile = field(default_factory=lambda: ComposeFile({"services": {}}))
    image: Image | None = None
    addresses: dict[str, str] = field(default_factory=dict)
    databases: dict[str, str] = field(default_factory=dict)
    provided: set[str] = field(default_factory=set)
    test_env: dict[str, str] = field(default_factory=dict)
    container_ports: dict[str, int] = field(default_factory=dict)
    completed: dict[str, int] = field(default_factory=dict)

    @property
    def app_services(self) -> list[str]:
        return self.compose.built_from("deploy/Dockerfile")

    def container_port(self, name: str) -> int | None:
        return container_port(self.compose.services[name], self.image_env)

    @property
    def image_env(self) -> dict[str, str]:
        return self.image.dockerfile.final.env if self.image else {}

    def filesystem(self, name: str) -> Path:
        return self.data_dir / "containers" / name

    def map_value(self, name: str, value: str) -> str:
        """A container's view of a setting turned into this machine's: hosts, the database, paths."""
        if "://" in value and (url := make_url(value)).host in self.databases:
            local = make_url(self.databases[url.host])
            return local.set(drivername=url.drivername).render_as_string(hide_password=False)
        for address, local_address in self.addresses.items():
            value = value.replace(address, local_address)
        if value.startswith("/"):
            return str(self.filesystem(name)) + value
        return value

    def process_env(self, name: str) -> dict[str, str]:
        """Exactly the container's environment (the image's ENV, then the service's), mapped, plus what the
        test adds (its topic prefix and short broker timeouts) and the port this process listens on."""
        assert self.image is not None
        env = {"PATH": f"{self.image.bin}:{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
               "HOME": str(self.filesystem(name) / "root"), "LANG": "C.UTF-8",
               "PYTHONPATH": str(self.image.site_packages)}  # the image installs into the interpreter's path
        for key, value in {**self.image_env, **self.compose.services[name].environment}.items():
            env[key] = self.map_value(name, value)
        for host_variable, port_variable in SERVICE_HOSTS.items():
            other = env.get(host_variable)
            if other in self.compose.services:
                env[host_variable] = "127.0.0.1"
                env[port_variable] = str(self.ports.setdefault(other, free_port()))
        env.update(self.test_env)
        service = self.compose.services[name]
        if name in self.ports:
            env[PORT_VARIABLES[service.command[0]]] = str(self.ports[name])
        return env

    def argv(self, name: str) -> list[str]:
        """The image's ENTRYPOINT followed by the service's command, as a container runs it."""
        assert self.image is not None
        entrypoint = self.compose.services[name].spec.get("entrypoint") or self.image.dockerfile.final.exec_form(
            "ENTRYPOINT") or []
        return [*entrypoint, *(self.compose.services[name].command or self.image.dockerfile.final.exec_form("CMD")
                               or [])]

    def run(self, name: str) -> Service:
        port = self.container_port(name)
        if port is not None:
            self.container_ports[name] = port
            self.ports.setdefault(name, free_port())
        workdir = self.filesystem(name) / self.image.dockerfile.final.args("WORKDIR")[-1].lstrip("/")  # type: ignore[union-attr]
        workdir.mkdir(parents=True, exist_ok=True)
        log = self.data_dir / f"{name}.log"
        proc = subprocess.Popen(
            self.argv(name),
            env=self.process_env(name),
            cwd=workdir,
            stdout=open(log, "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.services[name] = Service(name, proc, log)
        return self.services[name]

    def health_probe(self, name: str) -> list[str]:
        """The service's health check, with its container port rewritten to the port mapped to it."""
        check = self.compose.services[name].healthcheck
        if check is None:
            raise ComposeError(f"{name} has no healthcheck, but a service depends on it being healthy")
        port = self.container_ports.get(name)
        local = f"127.0.0.1:{self.ports.get(name)}"
        return [LOOPBACK_PORT.sub(lambda m: local if int(m.group(1)) == port else m.group(0), arg) for arg in check]

    def is_healthy(self, name: str) -> bool:
        service = self.services[name]
        if service.proc.poll() is not None:
            raise AssertionError(f"{name} exited ({service.proc.returncode}):\n{self.tail(name)}")
        probe = subprocess.run(self.health_probe(name), env=self.process_env(name), capture_output=True, timeout=30)
        return probe.returncode == 0

    def satisfy(self, name: str, condition: str) -> None:
        """Wait as Compose does before starting a dependant of `name`."""
        if name in self.provided:
            return  # brought up by the test (the broker fixture, the PostgreSQL server) before the stack
        if name not in self.app_services:
            raise ComposeError(f"an application service depends on {name}, which the test neither runs nor provides")
        if condition == "service_completed_successfully":
            self.complete(name)
        elif condition == "service_healthy":
            wait_until(lambda: self.is_healthy(name), timeout=self.compose.services[name].health_deadline,
                       interval=0.3, what=f"{name}'s healthcheck")
        elif condition != "service_started":
            raise ComposeError(f"unknown depends_on condition {condition!r}")

    def complete(self, name: str) -> None:
        if name in self.completed:
            return
        service = self.services[name]
        try:
            code = service.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{name} is a one-shot but still runs after 120 s:\n{self.tail(name)}") from None
        if code != 0:
            raise AssertionError(f"{name} exited {code}, so its dependants would never start:\n{self.tail(name)}")
        self.completed[name] = code
        del self.services[name]  # done: what stays in `services` are the long-running ones

    def up(self) -> ComposeStack:
        """`docker compose up --wait`: start in dependency order, honour each condition, then wait until every
        long-running service with a health check is healthy."""
        for name in self.compose.start_order(self.app_services):
            for dependency, condition in self.compose.services[name].depends_on.items():
                self.satisfy(dependency, condition)
            self.run(name)
        for name in list(self.services):
            if self.compose.services[name].healthcheck is not None:
                self.satisfy(name, "service_healthy")
        return self

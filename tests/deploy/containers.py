"""The chart's pods as containers on one machine (Docker or Podman): what `make images-test` runs.

Each Deployment of a rendered chart becomes one container started with what its pod spec
says, read from the rendered manifests and never restated here: the image, command and
args, env and envFrom (ConfigMaps from the same render; Secrets, which the chart only
references, from the test), the ports, the volumes (emptyDir, Secret, ConfigMap), the pod
and container security contexts (uid/gid, fsGroup, read-only root filesystem, dropped
capabilities, no privilege escalation, seccomp) and the memory and CPU limits. A pod
feature this translation does not know is an error, not silently dropped, so the chart
cannot grow something the containers do not run.

Helm's hooks run as Helm runs them: `run_hooks("pre-install")` runs the rendered hook Jobs to
completion, in Helm's order, before the Deployments start, and fails when one fails. While
they run, only what exists before an install may be used (the test's Secrets, which stand for
the operator's): a hook naming the chart's own ConfigMaps or generated Secret is refused, as it
would never start in a cluster.

Services become DNS names on a private network of the engine (`demo-soriflow-stt`,
`demo-soriflow-stt.speech.svc`, ...), so the addresses the chart writes into the ConfigMaps
resolve as they do in a cluster. Container ports are published on 127.0.0.1 at ports the
engine picks, and the probes' gRPC health is checked through them. NetworkPolicies are not
reproduced: every container may reach every other (tests/deploy/test_chart_behaviour.py checks
the policies' peers; a cluster with a CNI that enforces them, tests/deploy/test_cluster.py).
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets as secrets_module
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.images import Engine, common_build_args
from soriflow.client import wait_for_serving
from soriflow.stack import TRIGGER_PREFIXES, LocalStack, StackConfig
from tests.deploy.conftest import Rendered

#: Secret name -> key -> value: what the chart references by name (auth token, AWS keys, ...).
Secrets = Mapping[str, Mapping[str, str]]

_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_FACTORS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_FACTORS |= {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


#: Pod spec fields translated into the engine's options.
POD_FIELDS = {"containers", "initContainers", "volumes", "securityContext", "terminationGracePeriodSeconds"}
#: Fields about scheduling and cluster identity, which mean nothing on one machine.
POD_FIELDS_FOR_A_CLUSTER = {
    "serviceAccountName", "automountServiceAccountToken", "enableServiceLinks", "affinity",
    "tolerations", "nodeSelector", "topologySpreadConstraints", "priorityClassName",
    "imagePullSecrets", "restartPolicy", "runtimeClassName",
}  # fmt: skip
POD_SECURITY_FIELDS = {
    "runAsUser", "runAsGroup", "runAsNonRoot", "fsGroup", "supplementalGroups", "seccompProfile",
}  # fmt: skip
CONTAINER_SECURITY_FIELDS = {
    "runAsUser", "runAsGroup", "runAsNonRoot", "readOnlyRootFilesystem", "allowPrivilegeEscalation",
    "privileged", "capabilities", "seccompProfile",
}  # fmt: skip
CONTAINER_FIELDS = {
    "name", "image", "imagePullPolicy", "command", "args", "env", "envFrom", "ports", "resources",
    "securityContext", "volumeMounts", "startupProbe", "readinessProbe", "livenessProbe",
    "terminationMessagePolicy", "workingDir",
}  # fmt: skip


class Unsupported(ValueError):
    """A pod spec field the container translation does not know (so cannot honour)."""


def quantity_bytes(value: str | int) -> int:
    """A Kubernetes quantity (`3Gi`, `512Mi`, `2G`) in bytes."""
    match = _QUANTITY.match(str(value))
    if not match:
        raise Unsupported(f"quantity {value!r}")
    return int(float(match.group(1)) * _FACTORS[match.group(2)])


def cpu_cores(value: str | int | float) -> float:
    text = str(value)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


@dataclass
class Pod:
    """One Deployment's pod as the engine runs it."""

    component: str
    deployment: str
    container: str  # the engine's container name
    aliases: list[str]
    run_args: list[str]
    image: str
    command_args: list[str]
    ports: dict[str, int]  # port name -> container port
    probe: dict[str, Any]
    stop_timeout_s: int
    volumes: list[str] = field(default_factory=list)  # engine volumes created for it
    init: list[tuple[str, list[str], str, list[str]]] = field(default_factory=list)
    published: dict[int, int] = field(default_factory=dict)  # container port -> host port


class ChartContainers:
    """Starts, watches and stops a rendered release's Deployments as containers."""

    def __init__(
        self, engine: Engine, rendered: Rendered | None, secrets: Secrets, *, prefix: str = ""
    ) -> None:
        if not engine.can_run:
            raise RuntimeError(f"{engine.name} builds images but cannot run them: Docker or Podman needed")
        self.engine = engine
        self.rendered = rendered
        self.secrets = secrets
        self.prefix = prefix or f"sfct-{secrets_module.token_hex(3)}"
        self.network = f"{self.prefix}-net"
        self.files = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self.pods: dict[str, Pod] = {}
        self.extra: list[str] = []  # other containers started on the network (moto, PostgreSQL)
        self._network_created = False
        #: While pre-install hooks run, the release's own objects do not exist yet.
        self._before_install = False

    # --- translating a pod spec ------------------------------------------------------------------

    @property
    def release(self) -> Rendered:
        if self.rendered is None:
            raise RuntimeError("no chart rendered yet")
        return self.rendered

    def _config_map(self, name: str) -> dict[str, str]:
        if self._before_install:
            raise Unsupported(f"a pre-install hook uses ConfigMap {name}, which Helm creates after the hooks")
        doc = self.release.get("ConfigMap", name)
        return {k: str(v) for k, v in (doc.get("data") or {}).items()}

    def _secret(self, name: str, optional: bool = False) -> dict[str, str]:
        """A Secret the test gives, else one the chart renders itself (a generated token)."""
        if name in self.secrets:
            return dict(self.secrets[name])
        rendered = self.release.find("Secret", name)
        if rendered is not None and self._before_install:
            raise Unsupported(f"a pre-install hook uses Secret {name}, which Helm creates after the hooks")
        if rendered is not None:
            data = {k: base64.b64decode(v).decode() for k, v in (rendered.get("data") or {}).items()}
            return {**data, **{k: str(v) for k, v in (rendered.get("stringData") or {}).items()}}
        if optional:
            return {}
        raise KeyError(f"the chart references Secret {name!r}: give it to ChartContainers")

    def environment(self, container: Mapping[str, Any]) -> dict[str, str]:
        """envFrom first, then env (later entries win), as the kubelet builds it."""
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                data = self._config_map(source["configMapRef"]["name"])
            elif "secretRef" in source:
                ref = source["secretRef"]
                data = self._secret(ref["name"], ref.get("optional", False))
            else:
                raise Unsupported(f"envFrom {source}")
            env.update({prefix + k: v for k, v in data.items()})
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = str(item["value"])
                continue
            ref = item.get("valueFrom", {})
            if "secretKeyRef" in ref:
                key_ref = ref["secretKeyRef"]
                data = self._secret(key_ref["name"], key_ref.get("optional", False))
            elif "configMapKeyRef" in ref:
                key_ref = ref["configMapKeyRef"]
                data = self._config_map(key_ref["name"])
            else:
                raise Unsupported(f"env {item['name']} from {ref}")
            if key_ref["key"] in data:
                env[item["name"]] = data[key_ref["key"]]
            elif not key_ref.get("optional", False):
                raise KeyError(f"env {item['name']}: no key {key_ref['key']!r} in {key_ref['name']}")
        return env

    def _volume_source(
        self, pod_name: str, volume: Mapping[str, Any], fs_group: int | None, created: list[str]
    ) -> str:
        """The engine's `--volume` source for a pod volume: an engine volume or a host folder."""
        name = volume["name"]
        if "emptyDir" in volume:
            # An emptyDir: a fresh engine volume shared by the pod's containers, group-owned by
            # the pod's fsGroup (setgid), as the kubelet leaves it. In memory (tmpfs); its
            # sizeLimit is not enforced (Podman's local driver refuses size on tmpfs).
            options = ["mode=2777" if fs_group is not None else "mode=1777"]
            if fs_group is not None:
                options.append(f"gid={fs_group}")
            engine_volume = f"{pod_name}-{name}"
            self.engine.run(
                "volume",
                "create",
                "--opt",
                "type=tmpfs",
                "--opt",
                "device=tmpfs",
                "--opt",
                f"o={','.join(options)}",
                engine_volume,
                capture=True,
            )
            created.append(engine_volume)
            return engine_volume
        if "secret" in volume or "configMap" in volume:
            if "secret" in volume:
                spec = volume["secret"]
                data = self._secret(spec["secretName"], spec.get("optional", False))
            else:
                spec = volume["configMap"]
                data = self._config_map(spec["name"])
            folder = self.files / pod_name / name
            folder.mkdir(parents=True)
            items = spec.get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                target = folder / item["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(data[item["key"]])
                target.chmod(0o444)
            folder.chmod(0o755)
            return str(folder)
        raise Unsupported(f"volume {name}: {sorted(set(volume) - {'name'})}")

    def _volumes(self, pod_name: str, spec: Mapping[str, Any], created: list[str]) -> dict[str, str]:
        """Each pod volume's `--volume` source; engine volumes made for it are added to `created`."""
        fs_group = (spec.get("securityContext") or {}).get("fsGroup")
        volumes = spec.get("volumes") or []
        return {v["name"]: self._volume_source(pod_name, v, fs_group, created) for v in volumes}

    @staticmethod
    def _check_pod_fields(spec: Mapping[str, Any]) -> None:
        """Refuses pod fields that would change what runs but have no translation here."""
        unknown = set(spec) - POD_FIELDS - POD_FIELDS_FOR_A_CLUSTER
        if unknown:
            raise Unsupported(f"pod fields {sorted(unknown)}")
        unknown = set(spec.get("securityContext") or {}) - POD_SECURITY_FIELDS
        if unknown:
            raise Unsupported(f"pod securityContext fields {sorted(unknown)}")

    def _security_args(
        self, pod_security: Mapping[str, Any], security: Mapping[str, Any], image_user: str
    ) -> list[str]:
        unknown = set(security) - CONTAINER_SECURITY_FIELDS
        if unknown:
            raise Unsupported(f"container securityContext fields {sorted(unknown)}")
        args: list[str] = []
        merged = {**pod_security, **security}
        user, group = merged.get("runAsUser"), merged.get("runAsGroup")
        if user is not None:
            args += ["--user", f"{user}:{group}" if group is not None else str(user)]
        if merged.get("runAsNonRoot"):
            effective = str(user) if user is not None else image_user.split(":")[0]
            if not effective.isdigit() or int(effective) == 0:
                raise Unsupported(f"runAsNonRoot, but the pod would run as {effective or 'root'!r}")
        for extra_group in [pod_security.get("fsGroup"), *(pod_security.get("supplementalGroups") or [])]:
            if extra_group is not None:
                args += ["--group-add", str(extra_group)]
        if security.get("privileged"):
            raise Unsupported("privileged containers")
        if security.get("readOnlyRootFilesystem"):
            args.append("--read-only")
            if self.engine.name == "podman":  # Podman adds writable /tmp, /run by default; Docker does not
                args.append("--read-only-tmpfs=false")
        if security.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        capabilities = security.get("capabilities") or {}
        args += [f"--cap-drop={c}" for c in capabilities.get("drop") or []]
        args += [f"--cap-add={c}" for c in capabilities.get("add") or []]
        seccomp = (merged.get("seccompProfile") or {}).get("type", "RuntimeDefault")
        if seccomp == "Unconfined":
            args += ["--security-opt", "seccomp=unconfined"]
        elif seccomp != "RuntimeDefault":
            raise Unsupported(f"seccompProfile {seccomp}")
        return args

    def _image_user(self, image: str) -> str:
        out = self.engine.run("image", "inspect", "--format", "{{.Config.User}}", image, capture=True)
        return out.stdout.strip()

    def _container_args(
        self,
        pod_name: str,
        container: Mapping[str, Any],
        pod_spec: Mapping[str, Any],
        volume_sources: Mapping[str, str],
    ) -> tuple[list[str], list[str]]:
        """(engine `run` options, command after the image) for one container of a pod."""
        unknown = set(container) - CONTAINER_FIELDS
        if unknown:
            raise Unsupported(f"container {container['name']}: {sorted(unknown)}")
        args = self._security_args(
            pod_spec.get("securityContext") or {},
            container.get("securityContext") or {},
            self._image_user(container["image"]),
        )
        for key, value in sorted(self.environment(container).items()):
            args += ["--env", f"{key}={value}"]
        for mount in container.get("volumeMounts") or []:
            if mount.get("subPath"):
                raise Unsupported(f"volumeMount subPath ({mount['name']})")
            mode = "ro" if mount.get("readOnly") else "rw"
            args += ["--volume", f"{volume_sources[mount['name']]}:{mount['mountPath']}:{mode}"]
        limits = (container.get("resources") or {}).get("limits") or {}
        if set(limits) - {"memory", "cpu"}:
            raise Unsupported(f"resource limits {sorted(set(limits) - {'memory', 'cpu'})} (GPUs?)")
        if "memory" in limits:
            args += ["--memory", str(quantity_bytes(limits["memory"]))]
        if "cpu" in limits:
            args += ["--cpus", str(cpu_cores(limits["cpu"]))]
        if container.get("workingDir"):
            args += ["--workdir", container["workingDir"]]
        tail: list[str] = []
        command = container.get("command")
        if command:
            args += ["--entrypoint", command[0]]
            tail += command[1:]
        tail += container.get("args") or []
        return args, tail

    def _aliases(self, labels: Mapping[str, str], ports: Mapping[str, int]) -> list[str]:
        """The DNS names of the Services that select these pod labels, as a cluster has them.

        A name on the engine's network reaches the container's own ports, so a Service whose
        port differs from the container port it targets cannot be reproduced: refused.
        """
        namespace = self.release.kind("Deployment")[0]["metadata"].get("namespace", "default")
        names: list[str] = []
        for service in self.release.kind("Service"):
            selector = service["spec"].get("selector") or {}
            if not selector or any(labels.get(k) != v for k, v in selector.items()):
                continue
            name = service["metadata"]["name"]
            for port in service["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                if ports.get(target, target) != port["port"]:
                    raise Unsupported(f"Service {name} port {port['port']} targets {target}")
            names += [
                name,
                f"{name}.{namespace}",
                f"{name}.{namespace}.svc",
                f"{name}.{namespace}.svc.cluster.local",
            ]
        return names

    def pod(self, component: str) -> Pod:
        """The container of a component's Deployment (created volumes and files included)."""
        deployment = self.release.deployment(component)
        template = deployment["spec"]["template"]
        spec = template["spec"]
        name = f"{self.prefix}-{component}"
        created: list[str] = []
        sources = self._volumes(name, spec, created)
        self._check_pod_fields(spec)
        [container] = spec["containers"]
        args, tail = self._container_args(name, container, spec, sources)
        ports = {
            p.get("name", str(p["containerPort"])): int(p["containerPort"])
            for p in container.get("ports") or []
        }
        init = []
        for index, init_container in enumerate(spec.get("initContainers") or []):
            init_args, init_tail = self._container_args(name, init_container, spec, sources)
            init.append((f"{name}-init{index}", init_args, init_container["image"], init_tail))
        pod = Pod(
            component=component,
            deployment=deployment["metadata"]["name"],
            container=name,
            aliases=self._aliases(template["metadata"].get("labels") or {}, ports),
            run_args=args,
            image=container["image"],
            command_args=tail,
            ports=ports,
            probe=container.get("startupProbe") or container.get("readinessProbe") or {},
            stop_timeout_s=int(spec.get("terminationGracePeriodSeconds", 30)),
            volumes=created,
            init=init,
        )
        return pod

    # --- running ---------------------------------------------------------------------------------

    def create_network(self) -> None:
        if not self._network_created:
            self.engine.run("network", "create", self.network, capture=True)
            self._network_created = True

    def run_container(
        self,
        name: str,
        image: str,
        options: list[str],
        tail: list[str],
        *,
        aliases: list[str],
        ports: list[int],
    ) -> None:
        # Kubernetes ignores an image's HEALTHCHECK (its probes are in the pod spec), so do we.
        args = ["run", "--detach", "--no-healthcheck", "--name", name, "--network", self.network]
        for alias in aliases:
            args += ["--network-alias", alias]
        for port in ports:
            args += ["--publish", f"127.0.0.1::{port}"]
        self.engine.run(*args, *options, image, *tail, capture=True)

    def published_port(self, name: str, port: int) -> int:
        out = self.engine.run("port", name, f"{port}/tcp", capture=True).stdout.strip()
        return int(out.splitlines()[0].rsplit(":", 1)[1])

    def run_pod(self, kind: str, name: str) -> dict[str, tuple[int, str]]:
        """Runs a rendered Pod (the `helm test` hook) or a Job's pod (a migration hook) to
        completion on the release's network: each of its containers in turn; their exit codes
        and output."""
        doc = self.release.get(kind, name)
        spec = doc["spec"]["template"]["spec"] if kind == "Job" else doc["spec"]
        self._check_pod_fields(spec)
        pod_name = f"{self.prefix}-{name}"
        created: list[str] = []
        results: dict[str, tuple[int, str]] = {}
        try:
            sources = self._volumes(pod_name, spec, created)
            for container in spec["containers"]:
                args, tail = self._container_args(pod_name, container, spec, sources)
                run = ["run", "--rm", "--no-healthcheck", "--network", self.network, *args]
                out = self.engine.run(*run, container["image"], *tail, check=False, capture=True)
                results[container["name"]] = (out.returncode, (out.stdout + out.stderr).strip())
        finally:
            for volume in created:
                self.engine.run("volume", "rm", "--force", volume, check=False, capture=True)
        return results

    def run_hooks(self, event: str) -> dict[str, dict[str, tuple[int, str]]]:
        """Runs the release's hook Jobs of `event` (pre-install, pre-upgrade) as Helm would: in
        its order, each to completion, stopping at the first that fails (Helm's backoffLimit
        retries are not reproduced: a failure here is a failure). Their containers' results."""
        results: dict[str, dict[str, tuple[int, str]]] = {}
        self.create_network()
        self._before_install = event == "pre-install"
        try:
            for hook in self.release.hooks(event):
                if hook["kind"] != "Job":
                    raise Unsupported(f"{event} hook {hook['kind']} {hook['metadata']['name']}")
                name = hook["metadata"]["name"]
                results[name] = self.run_pod("Job", name)
                failed = {c: r for c, r in results[name].items() if r[0] != 0}
                if failed:
                    raise RuntimeError(f"{event} hook Job {name} failed (Helm stops here): {failed}")
        finally:
            self._before_install = False
        return results

    def start(self, component: str) -> Pod:
        """Starts a component's pod (init containers first, to completion); returns at once."""
        self.create_network()
        pod = self.pod(component)
        for init_name, init_args, init_image, init_tail in pod.init:
            self.engine.run(
                "run", "--name", init_name, "--network", self.network, *init_args, init_image, *init_tail,
                capture=True,
            )  # fmt: skip
            self.engine.run("rm", init_name, capture=True)
        self.pods[component] = pod
        self.run_container(
            pod.container,
            pod.image,
            pod.run_args,
            pod.command_args,
            aliases=pod.aliases,
            ports=sorted(pod.ports.values()),
        )
        pod.published = {port: self.published_port(pod.container, port) for port in pod.ports.values()}
        return pod

    def state(self, name: str) -> str:
        out = self.engine.run("inspect", "--format", "{{.State.Status}}", name, check=False, capture=True)
        return out.stdout.strip() or "missing"

    def logs(self, name: str, lines: int = 40) -> str:
        out = self.engine.run("logs", "--tail", str(lines), name, check=False, capture=True)
        return (out.stdout + out.stderr).strip()

    def _probe_check(self, pod: Pod) -> Any:
        """An async check of the pod's startup (else readiness) probe through the published port:
        gRPC health SERVING, an HTTP GET below 400 or a TCP connection, as the kubelet's."""
        probe = pod.probe
        kind = next((k for k in ("grpc", "httpGet", "tcpSocket") if k in probe), None)
        if kind is None:
            raise Unsupported(f"{pod.component}: probe {sorted(probe)}")
        port = probe[kind]["port"]
        port = pod.ports[port] if isinstance(port, str) else int(port)
        host_port = pod.published[port]
        if kind == "grpc":
            return lambda: wait_for_serving(f"127.0.0.1:{host_port}", timeout=2, interval=0.2)
        if kind == "tcpSocket":

            async def connect() -> None:
                _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", host_port), 2)
                writer.close()

            return connect
        url = f"http://127.0.0.1:{host_port}{probe[kind].get('path', '/')}"

        async def get() -> None:
            import urllib.request

            def fetch() -> None:
                with urllib.request.urlopen(url, timeout=2):  # raises on >= 400
                    pass

            await asyncio.to_thread(fetch)

        return get

    async def wait_serving(self, component: str, timeout_s: float) -> float:
        """Seconds until the pod's probe passes through its published port (gRPC health
        SERVING for Soriflow's services); fails at once when the container exits."""
        pod = self.pods[component]
        check = self._probe_check(pod)
        started = time.monotonic()
        while True:
            state = await asyncio.to_thread(self.state, pod.container)
            if state not in ("running", "created", "configured"):
                raise RuntimeError(f"{pod.container} is {state}; its log ends:\n{self.logs(pod.container)}")
            try:
                await check()
                return time.monotonic() - started
            except (TimeoutError, OSError):
                if time.monotonic() - started > timeout_s:
                    raise TimeoutError(
                        f"{component} not ready after {timeout_s:.0f}s; its log ends:\n"
                        f"{self.logs(pod.container)}"
                    ) from None
                await asyncio.sleep(0.2)

    def address(self, component: str, port_name: str = "grpc") -> str:
        pod = self.pods[component]
        return f"127.0.0.1:{pod.published[pod.ports[port_name]]}"

    def stop(self, component: str) -> None:
        pod = self.pods.pop(component)
        self.engine.run(
            "stop", "-t", str(min(pod.stop_timeout_s, 10)), pod.container, check=False, capture=True
        )
        self.engine.run("rm", "--force", pod.container, check=False, capture=True)
        for volume in pod.volumes:
            self.engine.run("volume", "rm", "--force", volume, check=False, capture=True)

    def close(self) -> None:
        for component in list(self.pods):
            self.stop(component)
        for name in self.extra:
            self.engine.run("rm", "--force", name, check=False, capture=True)
        self.extra.clear()
        if self._network_created:
            self.engine.run("network", "rm", "--force", self.network, check=False, capture=True)
            self._network_created = False
        import shutil

        shutil.rmtree(self.files, ignore_errors=True)


# --- a whole release on one machine: moto + the chart's five Deployments ------------------------

MOTO_DOCKERFILE = Path(__file__).resolve().parent / "moto" / "Dockerfile"
MOTO_ALIAS = "moto"  # the AWS endpoint's host name on the network
MOTO_PORT = 5000
POSTGRES_DOCKERFILE = Path(__file__).resolve().parent / "postgres" / "Dockerfile"
POSTGRES_ALIAS = "postgres"  # the job store's host name on the network
POSTGRES_PORT = 5432
AUTH_SECRET = "soriflow-container-test-auth"
AWS_SECRET = "soriflow-container-test-aws"
DB_SECRET = "soriflow-container-test-db"


def _test_image(engine: Engine, dockerfile: Path, image: str, python_image: str, *args: str) -> str:
    """A stand-in's image on the images' Python base, built once."""
    if not engine.image_exists(image):
        engine.run(
            "build",
            "-f",
            str(dockerfile),
            "--build-arg",
            f"PYTHON_IMAGE={python_image}",
            *args,
            *common_build_args(engine),
            "-t",
            image,
            str(dockerfile.parent),
            capture=True,
        )
    return image


def moto_image(engine: Engine, python_image: str) -> str:
    """moto's server at the version installed here, on the images' Python base (built once)."""
    import importlib.metadata

    version = importlib.metadata.version("moto")
    image = f"localhost/soriflow-test-moto:{version}"
    return _test_image(engine, MOTO_DOCKERFILE, image, python_image, "--build-arg", f"MOTO_VERSION={version}")


def postgres_image(engine: Engine, python_image: str) -> str:
    """Debian's PostgreSQL 15 on the images' Python base (built once)."""
    return _test_image(engine, POSTGRES_DOCKERFILE, "localhost/soriflow-test-postgres:15", python_image)


def release_values(stack_config: StackConfig, queue_url: str, registry: str) -> dict[str, Any]:
    """The values of a real small install (ci/cpu-values.yaml) pointed at the moto container:
    an auth token, AWS keys and the PostgreSQL job store's URL from Secrets (the store's schema
    then comes from the migration hook Job), the local stack's buckets, queue and prefixes."""
    from tests.deploy.conftest import COMPONENTS, merged, value_set

    c = stack_config
    credentials = [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": AWS_SECRET, "key": key}}}
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    ]
    values: dict[str, Any] = merged(
        value_set("cpu"),
        {name: {"extraEnv": credentials} for name in COMPONENTS},
        {
            "image": {"registry": registry},
            "aws": {"s3EndpointUrl": f"http://{MOTO_ALIAS}:{MOTO_PORT}"},
            "auth": {"existingSecret": AUTH_SECRET},
            "gateway": {
                "queueUrl": queue_url,
                "inputUris": [f"s3://{c.input_bucket}/{p}" for p in TRIGGER_PREFIXES],
                "outputUri": f"s3://{c.output_bucket}/results/",
                "submissionsUri": f"s3://{c.input_bucket}/submissions/",
                "database": {"existingSecret": DB_SECRET},
            },
        },
    )
    # The chart's read allow-list: a pronunciation install lets the services read its reference
    # recordings besides the inputs and submissions.
    values["readUris"] = [f"s3://{c.input_bucket}/reference/"]  # the pronunciation references
    return values


@dataclass
class PublishedConfig(StackConfig):
    """The local stack's settings, with each service at its container's published port."""

    published: dict[str, int] = field(default_factory=dict)

    def address(self, service: str) -> str:
        return f"{self.host}:{self.published[service]}"


class ContainerRelease:
    """moto and the chart's Deployments as containers, provisioned like `soriflow up`'s stack.

    `aws` is a LocalStack pointed at the moto container's published port (boto3 clients,
    the demo's `config.address` returning the containers' published ports).
    """

    def __init__(self, engine: Engine, python_image: str, registry: str = "localhost") -> None:
        self.engine = engine
        self.python_image = python_image
        self.registry = registry
        self.token = secrets_module.token_urlsafe(24)
        self.secrets: dict[str, dict[str, str]] = {
            AUTH_SECRET: {"token": self.token},
            AWS_SECRET: {"AWS_ACCESS_KEY_ID": "soriflow", "AWS_SECRET_ACCESS_KEY": "soriflow"},
            DB_SECRET: {"url": f"postgresql://postgres@{POSTGRES_ALIAS}:{POSTGRES_PORT}/postgres"},
        }
        self.containers: ChartContainers | None = None
        self.aws: LocalStack | None = None
        self.config = PublishedConfig()
        self.rendered: Rendered | None = None
        self.startup_s: dict[str, float] = {}
        self.database_port = 0  # PostgreSQL's published port on this machine
        #: The pre-install hooks' results: Job name -> container -> (exit code, output).
        self.hook_results: dict[str, dict[str, tuple[int, str]]] = {}

    def start_aws(self, renderer: Any) -> None:
        """moto in a container (read-only root, uid 10001), provisioned; then the chart rendered."""
        from urllib.parse import urlsplit

        image = moto_image(self.engine, self.python_image)
        # The values name the queue, which needs moto: the chart is rendered once it runs.
        self.containers = ChartContainers(self.engine, None, self.secrets)
        cc = self.containers
        cc.create_network()
        name = f"{cc.prefix}-moto"
        cc.extra.append(name)
        cc.run_container(
            name,
            image,
            ["--read-only", "--user", "10001:10001", "--tmpfs", "/tmp:rw,mode=1777", "--cap-drop=ALL"],
            [],
            aliases=[MOTO_ALIAS],
            ports=[MOTO_PORT],
        )
        port = cc.published_port(name, MOTO_PORT)
        self.config = PublishedConfig(host="127.0.0.1", aws_port=port)
        self.aws = LocalStack(self.config)
        deadline = time.monotonic() + 120
        while True:
            try:
                self.aws.client("s3").list_buckets()
                break
            except Exception:
                if time.monotonic() > deadline or cc.state(name) != "running":
                    raise RuntimeError(f"moto did not start; its log ends:\n{cc.logs(name)}") from None
                time.sleep(0.5)
        self.aws.provision_aws()
        self._start_database()
        inside = urlsplit(self.aws.queue_url)._replace(netloc=f"{MOTO_ALIAS}:{MOTO_PORT}").geturl()
        self.rendered = renderer.render(release_values(self.aws.config, inside, self.registry))
        cc.rendered = self.rendered

    def _start_database(self) -> None:
        """PostgreSQL in a container (read-only root, uid 10001, data in tmpfs), accepting
        connections; empty: its schema is the migration hook's to make."""
        import psycopg

        cc = self.containers
        assert cc is not None
        name = f"{cc.prefix}-postgres"
        cc.extra.append(name)
        cc.run_container(
            name,
            postgres_image(self.engine, self.python_image),
            ["--read-only", "--user", "10001:10001", "--tmpfs", "/tmp:rw,mode=1777", "--cap-drop=ALL"],
            [],
            aliases=[POSTGRES_ALIAS],
            ports=[POSTGRES_PORT],
        )
        self.database_port = cc.published_port(name, POSTGRES_PORT)
        deadline = time.monotonic() + 120
        while True:
            try:
                with psycopg.connect(self.database_url, connect_timeout=2) as conn:
                    conn.execute("select 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline or cc.state(name) != "running":
                    raise RuntimeError(f"PostgreSQL did not start; its log ends:\n{cc.logs(name)}") from None
                time.sleep(0.5)

    @property
    def database_url(self) -> str:
        """The job store as this machine reaches it (through the published port)."""
        return f"postgresql://postgres@127.0.0.1:{self.database_port}/postgres"

    def deployments(self) -> tuple[str, ...]:
        """The components of every Deployment the chart renders (all are started)."""
        from tests.deploy.conftest import FULLNAME

        assert self.rendered is not None
        names = [d["metadata"]["name"] for d in self.rendered.kind("Deployment")]
        return tuple(name.removeprefix(f"{FULLNAME}-") for name in names)

    def missing_images(self, components: tuple[str, ...]) -> list[str]:
        assert self.rendered is not None
        images = [self.rendered.container(c)["image"] for c in components]
        return [image for image in images if not self.engine.image_exists(image)]

    async def start(self, components: tuple[str, ...], timeout_s: float = 600) -> dict[str, float]:
        """Starts the components' containers at once; seconds from `run` to SERVING each."""
        cc = self.containers
        assert cc is not None
        started: dict[str, float] = {}
        for component in components:
            started[component] = time.monotonic()
            cc.start(component)
            self.config.published[component] = int(cc.address(component).rsplit(":", 1)[1])

        async def one(component: str) -> None:
            await cc.wait_serving(component, timeout_s)
            self.startup_s[component] = round(time.monotonic() - started[component], 2)

        await asyncio.gather(*(one(c) for c in components))
        return self.startup_s

    def close(self) -> None:
        if self.containers is not None:
            self.containers.close()

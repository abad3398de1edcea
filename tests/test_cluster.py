"""The cluster setups: cluster.yaml (Ray's cluster launcher) and scripts/slurm (Slurm).

cluster.yaml is checked statically against the installed Ray (its schema and its config
preparation, nothing that reaches a cloud): node types, images, shared storage, and that
nothing but SSH is reachable from outside. The Slurm script is linted, then run for real on a
one-node "allocation": srun, scontrol and apptainer are shims that run everything here.
"""

import ast
import copy
import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import jsonschema
import psutil
import pytest
import ray.autoscaler
import yaml
from helpers import ROOT, free_ports
from ray.autoscaler._private.util import prepare_config, validate_config

import mothray
from mothray import catalog
from mothray.config import load_experiment
from mothray.storage import read_json

CLUSTER = ROOT / "cluster.yaml"
SBATCH = ROOT / "scripts" / "slurm" / "mothray.sbatch"
SHELLCHECK = Path(sys.executable).parent / "shellcheck"
SCHEMA = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
# Ray's AWS provider, read as source: its constants and default rules, without AWS.
AWS_CONFIG = Path(ray.autoscaler.__file__).parent / "_private" / "aws" / "config.py"

CPU_IMAGE = f"mothray:{mothray.__version__}"
GPU_IMAGE = f"{CPU_IMAGE}-gpu"
SHARED = "/mnt/mothray"
STORAGE = f"{SHARED}/runs"
OPEN_CIDRS = ("0.0.0.0/0", "::/0")
PRESETS = ("paper", "arch-sweep")


@pytest.fixture(scope="module")
def config():
    return yaml.safe_load(CLUSTER.read_text())


# --- cluster.yaml: what the node types are and what their containers get -------------------


def docker_of(config, node_type: str) -> dict:
    """A node type's Docker settings as Ray merges them: its own `docker` over the global one."""
    return {**config["docker"], **config["available_node_types"][node_type].get("docker", {})}


def is_head(config, node_type: str) -> bool:
    return node_type == config["head_node_type"]


def image_of(config, node_type: str) -> str:
    docker = docker_of(config, node_type)
    key = "head_image" if is_head(config, node_type) else "worker_image"
    return docker.get(key, docker["image"])


def run_options_of(config, node_type: str) -> list[str]:
    """The container's `docker run` options, as Ray assembles them (its own --shm-size aside)."""
    docker = docker_of(config, node_type)
    role = "head" if is_head(config, node_type) else "worker"
    options = docker.get("run_options", []) + docker.get(f"{role}_run_options", [])
    return shlex.split(" ".join(options))


def option_values(tokens: list[str], *names: str) -> list[str]:
    """The values given to any of `names` in a tokenized command line (`-v X` or `--volume=X`)."""
    values = []
    for i, token in enumerate(tokens):
        for name in names:
            if token == name and i + 1 < len(tokens):
                values.append(tokens[i + 1])
            elif token.startswith(f"{name}="):
                values.append(token.split("=", 1)[1])
    return values


def gpu_types(config) -> list[str]:
    types = config["available_node_types"]
    return [name for name, spec in types.items() if spec["resources"].get("GPU", 0) > 0]


def test_cluster_yaml_is_valid_for_the_installed_ray(config):
    # the schema of the Ray that the images hold (2.60), then Ray's own preparation of the
    # config as `ray up` does it before contacting the cloud: defaults merged, checks run
    jsonschema.validate(config, json.loads(SCHEMA.read_text()))
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    assert prepared["available_node_types"][config["head_node_type"]]["max_workers"] == 0


def test_nothing_installs_ray_over_the_images_own(config):
    # Ray's AWS defaults pip-install a nightly Ray in setup_commands: ours must replace them
    prepared = prepare_config(copy.deepcopy(config))
    commands = [
        *prepared["setup_commands"],
        *prepared["head_setup_commands"],
        *prepared["worker_setup_commands"],
    ]
    assert not [command for command in commands if re.search(r"pip3? install|ray-wheels", command)]


def test_node_types_head_cpu_and_gpu_workers(config):
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0  # trials never land on the head
    workers = {name: spec for name, spec in types.items() if not is_head(config, name)}
    assert gpu_types(config), "no node type declares GPUs for Tune's GPU requests"
    assert any(spec["resources"].get("GPU", 0) == 0 for spec in workers.values())
    # every worker type autoscales from zero, and idle workers go away
    assert all(spec["min_workers"] == 0 and spec["max_workers"] > 0 for spec in workers.values())
    assert 0 < config["idle_timeout_minutes"] <= 30
    assert config["max_workers"] >= sum(spec["max_workers"] for spec in workers.values())


@pytest.mark.parametrize("preset", PRESETS)
def test_a_trial_of_each_preset_fits_a_gpu_node_and_they_run_at_once(config, preset):
    experiment = load_experiment(preset)
    wanted = experiment.resources
    per_node = []
    for name in gpu_types(config):
        spec = config["available_node_types"][name]
        offered = spec["resources"]
        if (
            wanted.gpus_per_actor <= offered["GPU"]
            and wanted.cpus_per_actor <= offered.get("CPU", 0)
            and all(amount <= offered.get(key, 0) for key, amount in wanted.custom.items())
        ):
            fits = min(
                offered["GPU"] // wanted.gpus_per_actor, offered["CPU"] // wanted.cpus_per_actor
            )
            per_node.append(int(fits) * spec["max_workers"])
    assert per_node, f"no GPU node type holds a trial of {preset}"
    batches = math.ceil(experiment.networks / wanted.networks_per_actor)
    trials = len(experiment.hidden_sizes) * batches
    assert sum(per_node) >= trials


def test_images_are_this_versions_cpu_and_gpu_images(config):
    """By tag: the repository part is the user's registry (make image IMAGE=...)."""
    assert _tag(config["docker"]["image"]) == CPU_IMAGE
    assert config["docker"]["pull_before_run"] is True
    assert config["docker"]["container_name"]
    for name in config["available_node_types"]:
        want = GPU_IMAGE if name in gpu_types(config) else CPU_IMAGE
        assert _tag(image_of(config, name)) == want, name


def _tag(image: str) -> str:
    """`mothray:0.1.0` of `ghcr.io/you/mothray:0.1.0`."""
    return image.rsplit("/", 1)[-1]


def test_gpu_options_only_on_gpu_nodes(config):
    for name in config["available_node_types"]:
        options = run_options_of(config, name)
        gpus = option_values(options, "--gpus") + [o for o in options if "nvidia" in o]
        if name in gpu_types(config):
            assert gpus == ["all"], name
        else:
            assert gpus == [], name


def test_every_container_gets_the_shared_storage(config):
    for name in config["available_node_types"]:
        options = run_options_of(config, name)
        assert f"{SHARED}:{SHARED}" in option_values(options, "-v", "--volume"), name
        assert f"MOTHRAY_STORAGE={STORAGE}" in option_values(options, "-e", "--env"), name
        # every node runs Ray's token authentication, with the user's token
        assert "RAY_AUTH_MODE=token" in option_values(options, "-e", "--env"), name
    assert config["file_mounts"] == {"~/.ray/auth_token": "~/.ray/auth_token"}


def test_hosts_mount_the_shared_storage_before_docker(config):
    (mount,) = config["initialization_commands"]  # on every host, before the container starts
    assert re.search(rf'mount -t nfs4 .* "\$EFS_DNS:/" {SHARED}\b', mount)
    assert f"mountpoint -q {SHARED}" in mount  # idempotent: a second `ray up` leaves it be
    assert "nfs-common" in mount
    assert "EFS_DNS=" in mount and mount.count("EFS_DNS=") == 1  # one place to fill in


def test_cluster_commands_are_valid_shell(config, tmp_path):
    commands = [
        *config["initialization_commands"],
        *config["head_setup_commands"],
        *config["head_start_ray_commands"],
        *config["worker_start_ray_commands"],
    ]
    script = tmp_path / "commands.sh"
    # as Ray runs each: a bash -c of its own; $RAY_HEAD_IP comes from Ray
    script.write_text("#!/bin/bash\nRAY_HEAD_IP=10.0.0.1\n" + "".join(f"({c})\n" for c in commands))
    subprocess.run(["bash", "-n", str(script)], check=True)
    lint = subprocess.run([SHELLCHECK, "-e", "SC2086", str(script)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout


def test_every_node_type_names_its_ami_not_rays_old_default(config):
    # without ImageId Ray picks its DLAMI (Ubuntu 18.04) V71: CUDA 11.2, too old for jax[cuda12]
    ray_defaults = _literal(AWS_CONFIG, "DEFAULT_AMI")
    assert ray_defaults, "Ray's default AMIs not found in its AWS provider"
    for name, spec in config["available_node_types"].items():
        image = spec["node_config"].get("ImageId", "")
        assert image.startswith("ami-") and image not in ray_defaults.values(), name


# --- security: nothing but SSH from outside -------------------------------------------------

# keys that make a dict a firewall rule with ports (AWS IpPermissions, GCP firewall, Azure NSG)
RULE_KEYS = ("FromPort", "ToPort", "IpProtocol", "allowed", "ports", "destinationPortRange")
# Ray bound to every interface, or its client server (a way in beside the job server)
BAD_FLAGS = re.compile(
    r"--[\w-]*host[= ]+(0\.0\.0\.0|::|\[::\])(\s|$)"
    r"|--ray-client-server-port|--ray-debugger-external"
)
# a container port published on the host (in `docker run` options)
PUBLISH = re.compile(r"(^|\s)(-p|--publish)[= ]?\S")


def exposures(tree) -> list[str]:
    """Where a config lets any address in on a port other than 22, or binds Ray to the world.

    An open CIDR (0.0.0.0/0, ::/0) anywhere counts against the nearest enclosing rule's
    ports; one with no rule around it counts as every port.
    """
    found = []

    def walk(node, path, rule):
        if isinstance(node, dict):
            rule = node if any(key in node for key in RULE_KEYS) else rule
            for key, value in node.items():
                walk(value, f"{path}.{key}", rule)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]", rule)
        elif isinstance(node, str):
            if any(cidr in node for cidr in OPEN_CIDRS):
                ports = _ports(rule)
                if ports != {(22, 22)}:
                    found.append(f"{path}: {node} open on {sorted(ports) if ports else 'all'}")
            if BAD_FLAGS.search(node) or ("run_options" in path and PUBLISH.search(node)):
                found.append(f"{path}: {node}")

    walk(tree, "", None)
    return found


def _ports(rule) -> set[tuple[int, int]] | None:
    """The port ranges a firewall rule opens; None: every port (or unknown)."""
    if rule is None:
        return None
    if "FromPort" in rule or "IpProtocol" in rule:  # AWS
        if str(rule.get("IpProtocol")) == "-1" or rule.get("FromPort", -1) == -1:
            return None
        return {(int(rule["FromPort"]), int(rule["ToPort"]))}
    ranges = rule.get("destinationPortRange") or [
        port for allowed in rule.get("allowed", [rule]) for port in allowed.get("ports", [])
    ]
    ranges = [ranges] if isinstance(ranges, str) else ranges
    if not ranges or "*" in ranges:
        return None
    return {tuple(int(p) for p in f"{r}-{r}".split("-")[:2]) for r in map(str, ranges)}


def test_nothing_but_ssh_is_open_to_the_world(config):
    assert exposures(config) == []
    (start,) = [c for c in config["head_start_ray_commands"] if "ray start" in c]
    assert "--dashboard-host=127.0.0.1" in start.split()


def test_rules_ray_creates_for_this_config_open_only_ssh(config):
    # Ray's AWS provider gives a group it creates: node-to-node traffic from the group itself,
    # its default SSH rule (from 0.0.0.0/0, as cluster.yaml says), then ours
    ssh = _returned_literal(AWS_CONFIG, "_create_default_ssh_inbound_rules")
    assert [(rule["FromPort"], rule["ToPort"]) for rule in ssh] == [(22, 22)]
    assert "0.0.0.0/0" in str(ssh)
    ours = config["provider"].get("security_group", {}).get("IpPermissions", [])
    assert exposures({"IpPermissions": [*ssh, *ours]}) == []


def _with_rule(rule: dict):
    """A change to a config: one more inbound rule for the cluster's security group."""

    def change(config):
        config["provider"]["security_group"].setdefault("IpPermissions", []).append(rule)

    return change


def _head_start(edit):
    """A change to a config: the head's `ray start` edited."""

    def change(config):
        commands = config["head_start_ray_commands"]
        commands[:] = [edit(c) if "ray start" in c else c for c in commands]

    return change


WORLD = [{"CidrIp": "0.0.0.0/0"}]
BAD_VARIANTS = {
    "dashboard to the world": _with_rule(
        {"IpProtocol": "tcp", "FromPort": 8265, "ToPort": 8265, "IpRanges": WORLD}
    ),
    "GCS to every IPv6 address": _with_rule(
        {
            "IpProtocol": "tcp",
            "FromPort": 6379,
            "ToPort": 6379,
            "Ipv6Ranges": [{"CidrIpv6": "::/0"}],
        }
    ),
    "SSH and the next port": _with_rule(
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 23, "IpRanges": WORLD}
    ),
    "every port": _with_rule({"IpProtocol": "-1", "IpRanges": WORLD}),
    "a GCP firewall for Ray client": lambda c: c["provider"].update(
        firewall={
            "sourceRanges": ["0.0.0.0/0"],
            "allowed": [{"IPProtocol": "tcp", "ports": ["10001"]}],
        }
    ),
    "dashboard on all interfaces": _head_start(lambda c: c.replace("127.0.0.1", "0.0.0.0")),
    "Ray client server": _head_start(lambda c: f"{c} --ray-client-server-port=10001"),
    "a published port": lambda c: c["docker"]["run_options"].append("-p 8265:8265"),
}


@pytest.mark.parametrize("variant", BAD_VARIANTS)
def test_the_security_check_catches_an_exposed_variant(config, variant):
    bad = copy.deepcopy(config)
    BAD_VARIANTS[variant](bad)
    assert bad != config
    assert exposures(bad), f"{variant} passed the security check"


def test_the_security_check_allows_ssh_from_anywhere(config):
    ssh = copy.deepcopy(config)
    ssh["provider"]["security_group"]["IpPermissions"] = [
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    ]
    assert exposures(ssh) == []


def _literal(path: Path, name: str):
    """The literal value a module assigns to `name` at top level."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == name for t in node.targets):
            return ast.literal_eval(node.value)
    return None


def _returned_literal(path: Path, function: str):
    """The literal a module's function returns."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef) and node.name == function:
            (returned,) = [n for n in ast.walk(node) if isinstance(n, ast.Return)]
            return ast.literal_eval(returned.value)
    raise AssertionError(f"{function} not found in {path}")


# --- scripts/slurm --------------------------------------------------------------------------


def test_sbatch_script_passes_shellcheck():
    lint = subprocess.run([SHELLCHECK, str(SBATCH)], capture_output=True, text=True)
    assert (lint.returncode, lint.stdout) == (0, "")


def test_sbatch_script_parses():
    subprocess.run(["bash", "-n", str(SBATCH)], check=True)


def test_sbatch_asks_for_whole_nodes_and_a_warning_before_the_time_limit():
    directives = re.findall(r"^#SBATCH (\S+)", SBATCH.read_text(), re.MULTILINE)
    assert {"--exclusive", "--ntasks-per-node=1", "--mem=0"} <= set(directives)
    assert any(re.fullmatch(r"--signal=B:USR1@\d+", d) for d in directives)
    # the directives come before the first command, or sbatch ignores them
    body = SBATCH.read_text().split("\nset -euo pipefail")[0]
    assert all(line.startswith("#") or not line.strip() for line in body.splitlines())


# srun, scontrol and apptainer for a one-node allocation: each logs its command line and runs
# the task here, in its own process (the script's background srun is the Ray node itself).
SHIMS = {
    "srun": """
while [[ ${1:-} == -* ]]; do shift; done  # --nodes=1 --nodelist=... --cpus-per-task=...
exec "$@"
""",
    "scontrol": """
[[ $1 == show && $2 == hostnames ]] || exit 2
tr ',' '\\n' <<<"$3"
""",
    "apptainer": """
[[ $1 == exec ]] || exit 2
shift
while [[ $1 == -* ]]; do shift; done  # --nv --bind=...
shift  # the image
exec "$@"
""",
}


def tagged_processes(tag: str) -> list[psutil.Process]:
    """This user's processes whose environment carries `tag`: all that the script started."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("MOTHRAY_TEST_RUN") == tag:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


@pytest.fixture
def allocation(tmp_path):
    """The environment of a one-node Slurm job whose srun, scontrol and apptainer are shims."""
    shims = tmp_path / "bin"
    shims.mkdir()
    log = tmp_path / "calls.log"
    for name, body in SHIMS.items():
        shim = shims / name
        shim.write_text(f'#!/bin/bash\necho "{name} $*" >>{shlex.quote(str(log))}\n{body}')
        shim.chmod(0o755)
    (tmp_path / "home").mkdir()
    image = tmp_path / "mothray-gpu.sif"
    image.touch()
    temp_dir = tempfile.mkdtemp(prefix="mr", dir="/tmp")  # short: Ray's socket paths fit
    port, dashboard, listen, grpc, runtime_env, metrics, client = free_ports(7)
    tag = uuid.uuid4().hex
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RAY_", "SLURM_", "MOTHRAY_")) and key != "SCRATCH"
    } | {
        "PATH": f"{shims}:{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HOME": str(tmp_path / "home"),  # no ~/.ray token or config of the user's
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NODELIST": socket.gethostname(),
        "SLURM_JOB_NUM_NODES": "1",
        "SLURM_CPUS_ON_NODE": "2",
        "SLURM_SUBMIT_DIR": str(tmp_path),
        "MOTHRAY_STORAGE": str(tmp_path / "storage"),
        "MOTHRAY_RAY_PORT": str(port),
        "MOTHRAY_DASHBOARD_PORT": str(dashboard),
        "MOTHRAY_RAY_TEMP_DIR": temp_dir,
        # free ports: the session's own local cluster may hold Ray's defaults
        "RAY_START_ARGS": f"--dashboard-agent-listen-port={listen} "
        f"--dashboard-agent-grpc-port={grpc} --runtime-env-agent-port={runtime_env} "
        f"--metrics-export-port={metrics}",
        "RAY_HEAD_START_ARGS": f"--ray-client-server-port={client}",
        "MOTHRAY_TEST_RUN": tag,
    }
    yield env, log
    for process in tagged_processes(tag):  # only after a failure: what the script left behind
        process.send_signal(signal.SIGKILL)
    shutil.rmtree(temp_dir, ignore_errors=True)


def test_sbatch_runs_the_smoke_experiment_on_its_own_ray_cluster(allocation, tmp_path):
    env, log = allocation
    run = subprocess.run(
        ["bash", str(SBATCH), "2", "--config", "smoke", "--cpu"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=480,
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    assert "all 1 Ray nodes joined" in output

    storage = Path(env["MOTHRAY_STORAGE"])
    assert len(catalog.open(str(storage / "smoke" / "catalog.zarr")).seeds) == 2
    assert read_json(str(storage / "smoke" / "experiment.json"))["state"] == "complete"

    calls = log.read_text().splitlines()
    image = str(tmp_path / "mothray-gpu.sif")
    in_image = [call for call in calls if call.startswith("apptainer ")]
    assert in_image and all(f"--nv --bind={storage} {image} " in call for call in in_image)
    (head,) = [call for call in calls if call.startswith("srun ") and " --head " in call]
    assert " --block " in head and " --dashboard-host=127.0.0.1 " in head
    assert re.search(r" --node-ip-address=\d+\.\d+\.\d+\.\d+ ", head)
    (driver,) = [call for call in in_image if "mothray.experiment" in call]
    assert "mothray.experiment 2 --address " in driver and f"--storage {storage} " in driver

    # the head and every process it started are gone with the script
    deadline = time.monotonic() + 30
    while (left := tagged_processes(env["MOTHRAY_TEST_RUN"])) and time.monotonic() < deadline:
        time.sleep(1)
    assert not left, [process.cmdline()[:3] for process in left]


def test_sbatch_without_the_image_says_how_to_build_it(allocation, tmp_path):
    env, log = allocation
    env = env | {"MOTHRAY_IMAGE": str(tmp_path / "missing.sif")}
    run = subprocess.run(["bash", str(SBATCH)], env=env, capture_output=True, text=True, timeout=30)
    assert run.returncode == 1
    assert "apptainer build mothray-gpu.sif docker://" in run.stderr
    assert not log.exists()  # nothing was started


def test_experiments_see_the_gpu_node_type_this_cluster_scales_to():
    """A GPU preset is accepted while the GPU workers are scaled to zero (mothray.experiment
    reads the launcher's config, which `ray up` copies to the head)."""
    from mothray.experiment import launcher_node_types

    assert {"CPU": 4, "GPU": 1} in launcher_node_types(CLUSTER)


def test_the_readmes_on_premises_variant_is_valid_and_closed():
    """README's local-provider config passes Ray's preparation and schema, and opens nothing."""
    readme = (ROOT / "README.md").read_text()
    (block,) = re.findall(
        r"```yaml\n(cluster_name: mothray\nprovider:\n  type: local.*?)```", readme, re.S
    )
    onprem = yaml.safe_load(block)
    prepared = prepare_config(copy.deepcopy(onprem))
    validate_config(prepared)
    assert exposures(onprem) == []
    options = " ".join(onprem["docker"]["run_options"])
    assert f"--volume {SHARED}:{SHARED}" in options and f"MOTHRAY_STORAGE={STORAGE}" in options

"""The cluster images (docker/) without Docker: both Dockerfiles and .dockerignore checked
statically and with hadolint, and the CPU image's own install commands run in a virtual
environment, so an image that would install something else than the tests get fails here."""

import json
import os
import re
import shlex
import shutil
import site
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

import mothray

ROOT = Path(__file__).resolve().parent.parent
CPU = ROOT / "docker" / "Dockerfile"
GPU = ROOT / "docker" / "Dockerfile.gpu"
HADOLINT = Path(sys.executable).parent / "hadolint"
PYTHON = f"python{sys.version_info.major}.{sys.version_info.minor}"
RAY_USER = ("ray", "1000", "100")  # name, uid, gid: the `ubuntu` user of the hosts is uid 1000
CREDENTIAL_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
CREDENTIAL_PATH = re.compile(r"\.aws|\.ssh|\.ray|\.netrc|\.docker|id_rsa|\.pem$|\.env$")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def parse(path: Path) -> list[Instruction]:
    """A Dockerfile's instructions, line continuations joined and comments dropped."""
    instructions, pending = [], ""
    for line in path.read_text().splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            keyword, _, args = pending.strip().partition(" ")
            instructions.append(Instruction(keyword.upper(), " ".join(args.split())))
            pending = ""
    return instructions


def stages(path: Path) -> list[list[Instruction]]:
    """The build stages, each from its FROM on (global ARGs before the first FROM dropped)."""
    result: list[list[Instruction]] = []
    for instruction in parse(path):
        if instruction.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def arg_defaults(path: Path) -> dict[str, str]:
    return dict(
        instruction.args.split("=", 1)
        for instruction in parse(path)
        if instruction.keyword == "ARG" and "=" in instruction.args
    )


def substitute(text: str, values: dict[str, str]) -> str:
    """Expand ${NAME} and $NAME where NAME is known, leaving the rest ($PATH) alone."""
    pattern = re.compile(r"\$\{(\w+)\}|\$(\w+)")
    return pattern.sub(lambda m: values.get(m[1] or m[2], m[0]), text)


def env_of(stage: list[Instruction]) -> dict[str, str]:
    return dict(
        word.split("=", 1)
        for instruction in stage
        if instruction.keyword == "ENV"
        for word in shlex.split(instruction.args)
    )


def last(stage: list[Instruction], keyword: str) -> str:
    return [instruction.args for instruction in stage if instruction.keyword == keyword][-1]


def runs(stage: list[Instruction]) -> list[str]:
    return [instruction.args for instruction in stage if instruction.keyword == "RUN"]


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def pinned_ray() -> str:
    """The `ray[...]==X` requirement of pyproject's dependencies."""
    (ray,) = [dep for dep in project()["dependencies"] if re.match(r"ray\W", dep)]
    return ray


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` out of the context (Docker's rules, last match wins,
    a pattern that matches a directory matches everything under it)."""
    excluded = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        regex = re.compile(_glob_regex(pattern.lstrip("!").strip("/")))
        parts = path.split("/")
        if any(regex.fullmatch("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            excluded = not negated
    return excluded


def _glob_regex(pattern: str) -> str:
    tokens = re.split(r"(\*\*/|\*\*|\*|\?|\[[^\]]*\])", pattern)
    special = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    return "".join(
        special.get(token, token if token.startswith("[") else re.escape(token)) for token in tokens
    )


def copy_context(stage: list[Instruction], src: Path) -> None:
    """Do a stage's COPY instructions from the build context (the repository, as filtered by
    .dockerignore) into `src`, which stands for the image's /src."""
    for instruction in stage:
        if instruction.keyword != "COPY" or instruction.args.startswith("--"):
            continue
        *sources, dest = instruction.args.split()
        assert dest.startswith("/src"), dest
        target = src / dest.removeprefix("/src").strip("/")
        for source in sources:
            base = ROOT / source
            for file in _context_files(source):
                if base.is_dir():  # its contents go into dest
                    out = target / file.relative_to(base)
                else:
                    out = target / file.name if dest.endswith("/") else target
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, out)


def _context_files(source: str) -> list[Path]:
    path = ROOT / source
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [file for file in files if not dockerignored(file.relative_to(ROOT).as_posix())]


def clean_env(path_first: Path | None = None) -> dict[str, str]:
    """This environment (pip's configuration, proxies) without the test's own venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    if path_first:
        env["PATH"] = f"{path_first}{os.pathsep}{env['PATH']}"
    return env


def bash(command: str, cwd: Path, path_first: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=cwd,
        env=clean_env(path_first),
        capture_output=True,
        text=True,
    )


def image_commands(commands: list[str], values: dict[str, str], paths: dict[str, Path]) -> str:
    """A stage's RUN commands for this machine: ARG defaults substituted, the image's paths
    mapped to temporary ones, `--mount` flags dropped, and pip's cache left on (for speed;
    `--no-cache-dir` changes nothing that is installed)."""
    script = " && ".join(substitute(command, values) for command in commands)
    script = re.sub(r"--mount=\S+\s*", "", script).replace("--no-cache-dir ", "")
    for image_path, path in paths.items():
        script = re.sub(rf"(?<![\w/]){re.escape(image_path)}(?![\w-])", str(path), script)
    return script


# Static checks.


@pytest.mark.parametrize("dockerfile", [CPU, GPU], ids=["cpu", "gpu"])
def test_hadolint_finds_nothing(dockerfile):
    lint = subprocess.run([HADOLINT, dockerfile], capture_output=True, text=True)
    assert (lint.returncode, lint.stdout + lint.stderr) == (0, "")


def test_hadolint_does_find_something():
    lint = subprocess.run(
        [HADOLINT, "-"], input="FROM python\nRUN pip install ray\n", capture_output=True, text=True
    )
    assert lint.returncode == 1
    assert {"DL3006", "DL3013", "DL3042"} <= set(re.findall(r"DL\d+", lint.stdout))


def test_cpu_image_is_multi_stage_on_slim_python():
    builder, runtime = stages(CPU)
    assert builder[0].args == "python:${PYTHON_VERSION}-slim AS builder"
    assert runtime[0].args == "python:${PYTHON_VERSION}-slim"
    copies = [i.args for i in runtime if i.keyword in ("COPY", "ADD")]
    assert copies == ["--from=builder /opt/venv /opt/venv"]
    installs = [c for c in runs(builder) if "pip install" in c]
    assert installs and all("--no-cache-dir" in c for c in installs)


def test_version_args_match_the_project():
    defaults = arg_defaults(CPU)
    ray = pinned_ray()
    assert defaults["RAY_VERSION"] == ray.split("==")[1]
    assert defaults["PYTHON_VERSION"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    (builder_install,) = [c for c in runs(stages(CPU)[0]) if "pip install" in c]
    assert f'"{ray.split("==")[0]}==${{RAY_VERSION}}"' in builder_install
    assert '"/src[' in builder_install  # the source tree and the pinned Ray resolve together


def test_runtime_stage_has_what_the_ray_cluster_launcher_needs():
    runtime = stages(CPU)[-1]
    (setup,) = runs(runtime)
    assert "apt-get install -y --no-install-recommends openssh-client rsync" in setup
    assert "rm -rf /var/lib/apt/lists/*" in setup
    name, uid, gid = RAY_USER
    assert f"--home-dir /home/{name} --shell /bin/bash --uid {uid} --gid {gid} {name}" in setup
    assert f"install -d -o {uid} -g {gid} /home/{name}/.ray" in setup  # file_mounts' parent
    env = env_of(runtime)
    assert env["PATH"] == "/opt/venv/bin:$PATH"
    assert env["HOME"] == f"/home/{name}"  # Ray's launcher reads HOME from the image config
    assert (env["PYTHONUNBUFFERED"], env["PYTHONDONTWRITEBYTECODE"]) == ("1", "1")
    assert last(runtime, "WORKDIR") == f"/home/{name}"
    assert last(runtime, "USER") == f"{uid}:{gid}"


def test_login_shells_find_the_venv(tmp_path):
    """Ray's launcher runs its commands (`ray start`) in login shells, and Debian's /etc/profile
    resets PATH: the image's /etc/profile.d script must put /opt/venv/bin back in front."""
    (setup,) = runs(stages(CPU)[-1])
    (echo,) = re.findall(r"echo (.+?) > /etc/profile\.d/\w+\.sh", setup)
    script = tmp_path / "venv.sh"
    subprocess.run(["bash", "-c", f"echo {echo} > {script}"], check=True)
    debian = "/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games"  # /etc/profile's
    login = f'PATH={debian}; . {script}; echo "$PATH"'
    path = subprocess.run(["bash", "-c", login], capture_output=True, text=True).stdout
    assert path.strip() == f"/opt/venv/bin:{debian}"


def test_gpu_image_adds_the_cuda_extra_to_the_cpu_image():
    (stage,) = stages(GPU)
    assert stage[0].args == "${BASE_IMAGE}"
    assert arg_defaults(GPU)["BASE_IMAGE"] == f"mothray:{mothray.__version__}"
    (install,) = runs(stage)
    mount = "--mount=type=bind,source=.,target=/tmp/src,rw"
    assert install == f'{mount} pip install --no-cache-dir "/tmp/src[cuda]"'
    cuda = project()["optional-dependencies"]["cuda"]
    assert [dep.split(">=")[0] for dep in cuda] == ["jax[cuda12]"]
    assert env_of(stage)["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert last(stage, "USER") == last(stages(CPU)[-1], "USER") == f"{RAY_USER[1]}:{RAY_USER[2]}"


@pytest.mark.parametrize("dockerfile", [CPU, GPU], ids=["cpu", "gpu"])
def test_no_credentials_in_the_image(dockerfile):
    instructions = parse(dockerfile)
    names = [
        word.split("=")[0]
        for i in instructions
        if i.keyword in ("ENV", "ARG")
        for word in shlex.split(i.args)
    ]
    assert names and not [name for name in names if CREDENTIAL_NAME.search(name)]
    sources = [
        word
        for i in instructions
        if i.keyword in ("COPY", "ADD")
        for word in i.args.split()[:-1]
        if not word.startswith("--")
    ]
    assert not [source for source in sources if CREDENTIAL_PATH.search(source)]


def test_dockerignore_keeps_the_context_to_the_source_tree():
    kept = ["pyproject.toml", "README.md", "mothray/__init__.py", "mothray/experiments/paper.yaml"]
    left_out = [
        ".venv/bin/python",
        "runs/demo/experiment.json",
        ".git/HEAD",
        "mothray.egg-info/PKG-INFO",
        "build/lib/mothray/__init__.py",
        "mothray/__pycache__/config.cpython-311.pyc",
        ".pytest_cache/README.md",
        "tests/data/moth_reference.npz",
        "benchmarks/train.py",
        "docs/benchmarks.md",
        ".aws/credentials",
    ]
    assert [path for path in kept if dockerignored(path)] == []
    assert [path for path in left_out if not dockerignored(path)] == []


# The images' install commands, run here.


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory):
    """The CPU image's /opt/venv, made by the builder stage's own commands (the COPYs from the
    ignore-filtered context, then the RUNs) in a temporary directory."""
    tmp = tmp_path_factory.mktemp("image")
    builder = stages(CPU)[0]
    copy_context(builder, tmp / "src")
    paths = {"/opt/venv": tmp / "venv", "/src": tmp / "src"}
    script = image_commands(runs(builder), arg_defaults(CPU), paths)
    # The test environment's packages underlie the new venv (a .pth file), so pip resolves the
    # image's requirements against them and installs mothray alone: seconds, not the minute and
    # a half of a fresh 1.3 GB install that `make test` has just done with the same pins.
    overlay = tmp / "venv" / "lib" / PYTHON / "site-packages" / "test-environment.pth"
    pip = f"{tmp / 'venv'}/bin/pip install"
    script = script.replace(pip, f"echo {site.getsitepackages()[0]} > {overlay} && {pip}", 1)
    done = bash(script, cwd=tmp, path_first=Path(sys.executable).parent)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    yield tmp
    shutil.rmtree(tmp / "venv")  # over a gigabyte; pytest keeps its last three runs


def in_venv(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [venv / "bin" / "python", *args], cwd=cwd, capture_output=True, text=True, env=clean_env()
    )


def test_builder_installs_mothray_and_the_pinned_ray(image_venv):
    """...and boto3, which cluster.yaml's head needs for Ray's AWS autoscaler."""
    venv, cwd = image_venv / "venv", image_venv
    probe = (
        "import boto3, json, mothray, ray; print(json.dumps([mothray.__file__, ray.__version__]))"
    )
    done = in_venv(venv, cwd, "-c", probe)
    assert done.returncode == 0, done.stderr
    module, ray_version = json.loads(done.stdout)
    assert Path(module).is_relative_to(venv)  # installed, not the checkout
    assert ray_version == pinned_ray().split("==")[1]
    assert in_venv(venv, cwd, "-m", "mothray.experiment", "--help").returncode == 0
    preset = "from mothray.config import load_experiment; load_experiment('paper')"
    done = in_venv(venv, cwd, "-c", preset)
    assert done.returncode == 0, done.stderr


def test_images_install_the_extras_the_tests_install():
    """The test environment (make test) is the CPU image's install plus the dev tools."""
    makefile = (ROOT / "Makefile").read_text()
    (tested,) = re.findall(r"\$\(DEV_STAMP\):.*\n\t.* -e '\.\[([\w,]+)\]'", makefile)
    (cpu,) = re.findall(r'"/src\[([\w,]+)\]"', " ".join(runs(stages(CPU)[0])))
    assert set(tested.split(",")) - {"dev"} == set(cpu.split(","))
    assert '"/tmp/src[cuda]"' in " ".join(runs(stages(GPU)[0]))

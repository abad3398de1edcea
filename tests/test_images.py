"""The cluster images (docker/) without Docker. What can be observed here is run: the CPU image's
builder commands in a virtual environment (what gets installed, from which context), the GPU
image's install as pip resolves it, the runtime environment and login-shell PATH. What only
Docker can show (base images, USER, WORKDIR, root-only setup) stays a text check, plus hadolint."""

import importlib.metadata
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
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

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
    """The version of the `ray[...]==X` requirement of pyproject's dependencies."""
    (ray,) = [dep for dep in project()["dependencies"] if re.match(r"ray\W", dep)]
    return ray.split("==")[1]


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` out of the context (Docker's rules, last match wins,
    a pattern that matches a directory matches everything under it)."""
    excluded = False
    for pattern in dockerignore_patterns():
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


def context_files() -> list[str]:
    """The build context as Docker sends it: the repository's files that .dockerignore lets
    through (directories it ignores, with no `!` exception under them, are not walked)."""
    exceptions = [p[1:].strip("/") for p in dockerignore_patterns() if p.startswith("!")]

    def walked(directory: str) -> bool:
        return not dockerignored(directory) or any(
            re.search(r"[*?\[]", e) or e.startswith(directory + "/") for e in exceptions
        )

    files = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        here = Path(dirpath).relative_to(ROOT)
        dirnames[:] = [d for d in dirnames if walked((here / d).as_posix())]
        files += [
            (here / f).as_posix() for f in filenames if not dockerignored((here / f).as_posix())
        ]
    return sorted(files)


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


def run_builder(tmp: Path, values: dict[str, str]) -> subprocess.CompletedProcess:
    """The CPU image's builder stage in `tmp`: its COPYs into tmp/src, then its RUNs, with the
    ARGs `values`, making tmp/venv (the image's /opt/venv); pip's report in tmp/report.json.

    The test environment's packages underlie the new venv (a .pth file), so pip resolves the
    image's requirements against them and installs mothray alone: seconds, not the minute and a
    half of a fresh 1.3 GB install that `make test` has just done with the same pins."""
    builder = stages(CPU)[0]
    copy_context(builder, tmp / "src")
    paths = {"/opt/venv": tmp / "venv", "/src": tmp / "src"}
    script = image_commands(runs(builder), values, paths)
    overlay = tmp / "venv" / "lib" / PYTHON / "site-packages" / "test-environment.pth"
    pip = f"{tmp / 'venv'}/bin/pip install"
    report = f"--report {tmp / 'report.json'}"
    underlay = f"echo {site.getsitepackages()[0]} > {overlay}"
    assert pip in script, script
    script = script.replace(pip, f"{underlay} && {pip} {report}", 1)
    return bash(script, cwd=tmp, path_first=Path(sys.executable).parent)


def in_venv(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [venv / "bin" / "python", *args], cwd=cwd, capture_output=True, text=True, env=clean_env()
    )


def venv_distributions(venv: Path, cwd: Path) -> dict[str, tuple[str, list[str]]]:
    """Version and requirements of every distribution the venv's Python sees, by canonical
    name (the first found on its sys.path, as `import` would)."""
    probe = (
        "import importlib.metadata as m, json\n"
        "found = {}\n"
        "for d in m.distributions():\n"
        "    found.setdefault(d.metadata['Name'], (d.version, d.requires or []))\n"
        "print(json.dumps(found))"
    )
    done = in_venv(venv, cwd, "-c", probe)
    assert done.returncode == 0, done.stderr
    return {canonicalize_name(name): tuple(d) for name, d in json.loads(done.stdout).items()}


def pip_report_item(report: Path, name: str) -> dict:
    (item,) = [
        i for i in json.loads(report.read_text())["install"] if i["metadata"]["name"] == name
    ]
    return item


def requirements(requires_dist: list[str], extras: set[str]) -> list[Requirement]:
    """The requirements that installing with `extras` adds to the plain install."""
    parsed = [Requirement(r) for r in requires_dist]
    return [
        r
        for r in parsed
        if r.marker
        and any(r.marker.evaluate({"extra": e}) for e in extras)
        and not r.marker.evaluate({"extra": ""})
    ]


def base_requirements(requires_dist: list[str]) -> list[Requirement]:
    parsed = [Requirement(r) for r in requires_dist]
    return [r for r in parsed if not r.marker or r.marker.evaluate({"extra": ""})]


def installed_here(requirement: Requirement, seen: frozenset = frozenset()) -> bool:
    """Whether the test environment satisfies `requirement`, what its extras add included."""
    key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
    try:
        dist = importlib.metadata.distribution(requirement.name)
    except importlib.metadata.PackageNotFoundError:
        return False
    if not requirement.specifier.contains(dist.version, prereleases=True):
        return False
    added = requirements(dist.requires or [], requirement.extras) if key not in seen else []
    return all(installed_here(r, seen | {key}) for r in added)


# Hadolint.


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


# Text checks: what only Docker can show (base images, stages, USER, WORKDIR, image ENV as the
# launcher reads it) or what needs root and would change this machine (apt-get, useradd).


def test_cpu_image_is_multi_stage_on_slim_python():
    """Text: base images and what the runtime stage copies are build metadata. The base image's
    Python is the one the tests run (the builder's commands run here with it)."""
    builder, runtime = stages(CPU)
    assert builder[0].args == "python:${PYTHON_VERSION}-slim AS builder"
    assert runtime[0].args == "python:${PYTHON_VERSION}-slim"
    assert f"python{arg_defaults(CPU)['PYTHON_VERSION']}" == PYTHON
    copies = [i.args for i in runtime if i.keyword in ("COPY", "ADD")]
    assert copies == ["--from=builder /opt/venv /opt/venv"]
    installs = [c for c in runs(builder) if "pip install" in c]  # image size only, not contents
    assert installs and all("--no-cache-dir" in c for c in installs)


def test_runtime_setup_has_what_the_ray_cluster_launcher_needs():
    """Text: apt-get, useradd and `install -o` need root and would change this machine."""
    (setup,) = runs(stages(CPU)[-1])
    assert "apt-get install -y --no-install-recommends openssh-client rsync" in setup
    assert "rm -rf /var/lib/apt/lists/*" in setup
    name, uid, gid = RAY_USER
    assert f"--home-dir /home/{name} --shell /bin/bash --uid {uid} --gid {gid} {name}" in setup
    assert f"install -d -o {uid} -g {gid} /home/{name}/.ray" in setup  # file_mounts' parent


def test_runtime_runs_as_ray():
    """Text: USER, WORKDIR and HOME are image metadata (Ray's launcher reads HOME from the image
    config to place file mounts); numeric USER, so that Kubernetes' runAsNonRoot can check it."""
    runtime = stages(CPU)[-1]
    name, uid, gid = RAY_USER
    assert env_of(runtime)["HOME"] == f"/home/{name}"
    assert last(runtime, "WORKDIR") == f"/home/{name}"
    assert last(runtime, "USER") == f"{uid}:{gid}"


def test_gpu_image_builds_on_the_cpu_image_as_root_and_runs_as_ray():
    """Text: FROM, USER and the NVIDIA runtime's ENV are image metadata. The default base is the
    CPU image tagged with the version the GPU install puts in (test_gpu_install_... checks it)."""
    (stage,) = stages(GPU)
    assert stage[0].args == "${BASE_IMAGE}"
    assert arg_defaults(GPU)["BASE_IMAGE"] == f"mothray:{mothray.__version__}"
    users = [i.args for i in stage if i.keyword == "USER"]
    assert users == ["0:0", last(stages(CPU)[-1], "USER")]  # root to pip install, then ray
    assert env_of(stage)["NVIDIA_VISIBLE_DEVICES"] == "all"


@pytest.mark.parametrize("dockerfile", [CPU, GPU], ids=["cpu", "gpu"])
def test_no_credentials_in_the_images_env_or_args(dockerfile):
    """Text: ENV and ARG values stay in the image's metadata (`docker history`)."""
    names = [
        word.split("=")[0]
        for i in parse(dockerfile)
        if i.keyword in ("ENV", "ARG")
        for word in shlex.split(i.args)
    ]
    assert names and not [name for name in names if CREDENTIAL_NAME.search(name)]


# Behaviour: the build context, and shells.


def test_build_context_is_the_source_tree():
    """The context Docker would send from this checkout (both images see only it): the source
    tree and presets, no caches, venvs or credentials."""
    files = context_files()
    assert {"pyproject.toml", "README.md", "mothray/__init__.py"} <= set(files)
    assert {"experiments/paper.yaml", "experiments/schema.json"} <= set(files)
    tops = {file.split("/")[0] for file in files}
    assert tops == {"pyproject.toml", "README.md", "mothray", "experiments"}
    assert not [f for f in files if CREDENTIAL_PATH.search(f) or "__pycache__" in f]


def test_dockerignore_keeps_the_context_to_the_source_tree():
    """.dockerignore's rules on paths a checkout may hold, present here or not."""
    kept = [
        "pyproject.toml",
        "README.md",
        "mothray/__init__.py",
        "experiments/paper.yaml",
        "experiments/schema.json",
    ]
    left_out = [
        ".venv/bin/python",
        "runs/demo/experiment.json",
        ".git/HEAD",
        "mothray.egg-info/PKG-INFO",
        "build/lib/mothray/__init__.py",
        "mothray/__pycache__/config.cpython-311.pyc",
        "experiments/__pycache__/x.cpython-311.pyc",
        ".pytest_cache/README.md",
        "tests/data/moth_reference.npz",
        "benchmarks/train.py",
        "docs/benchmarks.md",
        ".aws/credentials",
        ".env",
    ]
    assert [path for path in kept if dockerignored(path)] == []
    assert [path for path in left_out if not dockerignored(path)] == []


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


# Behaviour: the images' install commands, run here.


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory):
    """The CPU image's /opt/venv, made by the builder stage's own commands. /src is removed
    afterwards, since the runtime stage copies the venv alone."""
    tmp = tmp_path_factory.mktemp("image")
    done = run_builder(tmp, arg_defaults(CPU))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    shutil.rmtree(tmp / "src")
    yield tmp
    shutil.rmtree(tmp / "venv")  # over a gigabyte; pytest keeps its last three runs


def test_builder_installs_mothray_from_the_source_tree(image_venv):
    """mothray at this checkout's version, imported from the venv (not the checkout, and
    without /src, which the runtime stage leaves behind)."""
    venv = image_venv / "venv"
    probe = "import json, mothray; print(json.dumps([mothray.__file__, mothray.__version__]))"
    done = in_venv(venv, image_venv, "-c", probe)
    assert done.returncode == 0, done.stderr
    module, version = json.loads(done.stdout)
    assert Path(module).is_relative_to(venv / "lib" / PYTHON / "site-packages")
    assert version == mothray.__version__


def test_builder_installs_the_pinned_ray_and_the_aws_extra(image_venv):
    """Ray at pyproject's pin (RAY_VERSION's default agrees), and everything mothray[aws] needs,
    boto3 (the head's AWS autoscaler), jax and optax among it, at versions that satisfy it."""
    venv = image_venv / "venv"
    item = pip_report_item(image_venv / "report.json", "mothray")
    assert item.get("requested_extras", []) == ["aws"]
    requires = item["metadata"]["requires_dist"]
    needed = base_requirements(requires) + requirements(requires, {"aws"})
    names = {canonicalize_name(r.name) for r in needed}
    assert {"ray", "boto3", "jax", "optax"} <= names
    dists = venv_distributions(venv, image_venv)
    found = {r: dists.get(canonicalize_name(r.name)) for r in needed}
    missing = [str(r) for r, d in found.items() if not d or not r.specifier.contains(d[0], True)]
    assert missing == []
    assert dists["ray"][0] == pinned_ray()
    done = in_venv(venv, image_venv, "-c", "import boto3, jax, optax, ray")
    assert done.returncode == 0, done.stderr


def test_ray_version_other_than_the_pin_is_refused(image_venv, tmp_path):
    """A RAY_VERSION build arg that differs from pyproject's pin fails the builder's pip install
    instead of building an image whose Ray cannot join the cluster. Its pip command alone, as a
    dry run in the built venv: a second `python -m venv` would cost ten seconds more."""
    major, minor, _ = pinned_ray().split(".", 2)
    # a release that exists, so that pip fails on the conflict, not on a missing version
    other = f"{major}.{int(minor) - 1}.0" if int(minor) else f"{int(major) - 1}.0.0"
    builder = stages(CPU)[0]
    copy_context(builder, tmp_path / "src")
    paths = {"/opt/venv": image_venv / "venv", "/src": tmp_path / "src"}
    script = image_commands(runs(builder), {**arg_defaults(CPU), "RAY_VERSION": other}, paths)
    pip = f"{image_venv / 'venv'}/bin/pip install"
    (install,) = [c for c in script.split(" && ") if c.startswith(pip)]
    done = bash(install.replace(pip, f"{pip} --dry-run", 1), tmp_path, Path(sys.executable).parent)
    output = done.stdout + done.stderr  # pip's explanation goes to either, by version
    assert done.returncode != 0
    assert "ResolutionImpossible" in output, output[-3000:]
    extras = r"(\[[^\]]*\])?"
    assert re.search(rf"The user requested ray{extras}=={re.escape(other)}\b", output)
    assert re.search(rf"depends on ray{extras}=={re.escape(pinned_ray())}\b", output)


def test_installed_mothray_ships_the_presets(image_venv):
    """An installed mothray (no checkout) finds the presets by name, the same ones and with the
    same contents as experiments/, and its CLI prints the presets' schema."""
    venv = image_venv / "venv"
    probe = (
        "import json\n"
        "from mothray.config import load_experiment, presets_dir, to_dict\n"
        "names = sorted(p.stem for p in presets_dir().glob('*.yaml'))\n"
        "shipped = (presets_dir() / 'schema.json').read_text()\n"
        "print(json.dumps([str(presets_dir()), names, to_dict(load_experiment('paper')), shipped]))"
    )
    done = in_venv(venv, image_venv, "-c", probe)
    assert done.returncode == 0, done.stderr
    where, names, paper, shipped = json.loads(done.stdout)
    from mothray.config import load_experiment, to_dict

    assert Path(where).is_relative_to(venv)
    assert names == sorted(p.stem for p in (ROOT / "experiments").glob("*.yaml"))
    assert (
        json.loads(json.dumps(to_dict(load_experiment(ROOT / "experiments/paper.yaml")))) == paper
    )
    assert shipped == (ROOT / "experiments" / "schema.json").read_text()
    done = in_venv(venv, image_venv, "-m", "mothray.experiment", "--schema")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["title"] == "mothray experiment"


def test_runtime_env_puts_the_venv_first(image_venv, tmp_path):
    """The runtime stage's ENV, applied here: `python` and `pip` are the venv's, and Python
    neither buffers its output (Ray's log streaming) nor writes bytecode."""
    venv = image_venv / "venv"
    paths = {"/opt/venv": venv, f"/home/{RAY_USER[0]}": tmp_path}
    env = {
        name: image_commands([value], {"PATH": "/usr/local/bin:/usr/bin:/bin"}, paths)
        for name, value in env_of(stages(CPU)[-1]).items()
    }
    shell = subprocess.run(
        ["bash", "-c", "command -v python python3 pip"],
        env={**clean_env(), **env},
        capture_output=True,
        text=True,
    )
    assert shell.stdout.split() == [f"{venv}/bin/{name}" for name in ("python", "python3", "pip")]
    probe = (
        "import json, sys, mothray\n"
        "out = [sys.prefix, sys.flags.dont_write_bytecode, sys.stdout.write_through]\n"
        "print(json.dumps(out))"
    )
    done = subprocess.run(
        ["python", "-c", probe], env={**clean_env(), **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [str(venv), 1, True]


def test_gpu_install_adds_jax_cuda12_at_the_images_jax(image_venv, tmp_path):
    """The GPU image's pip install, resolved by the CPU image's pip against the bind-mounted
    context (a dry run: CUDA wheels are gigabytes): mothray again with the `cuda` extra, which
    adds jax[cuda12] alone; the CPU image's jax satisfies it and pins the CUDA plugin to itself."""
    context = tmp_path / "context"
    for file in context_files():
        (context / file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / file, context / file)
    (stage,) = stages(GPU)
    report = tmp_path / "report.json"
    script = image_commands(runs(stage), arg_defaults(GPU), {"/tmp/src": context})
    assert "pip install " in script, script
    dry = f"pip install --dry-run --no-deps --quiet --report {report} "
    done = bash(script.replace("pip install ", dry, 1), tmp_path, image_venv / "venv" / "bin")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    item = pip_report_item(report, "mothray")
    assert item["metadata"]["version"] == mothray.__version__
    assert arg_defaults(GPU)["BASE_IMAGE"] == f"mothray:{item['metadata']['version']}"
    assert item.get("requested_extras", []) == ["cuda"]
    (jax,) = requirements(item["metadata"]["requires_dist"], {"cuda"})
    assert (jax.name, jax.extras) == ("jax", {"cuda12"})
    dists = venv_distributions(image_venv / "venv", image_venv)
    (version, jax_requires), (jaxlib, _) = dists["jax"], dists["jaxlib"]
    assert jax.specifier.contains(version)  # so pip keeps the CPU image's jax
    added = {canonicalize_name(r.name): r.specifier for r in requirements(jax_requires, {"cuda12"})}
    assert {"jaxlib", "jax-cuda12-plugin"} <= set(added)
    assert added["jaxlib"].contains(jaxlib)
    assert list(added["jax-cuda12-plugin"].filter(["0", version, "999"])) == [version]


def test_tests_install_the_extras_the_image_installs(image_venv):
    """The test environment holds every extra the CPU image installs, and no other but `dev`
    (and `cuda`, which the GPU image adds): the tests run what the image runs."""
    item = pip_report_item(image_venv / "report.json", "mothray")
    requires = item["metadata"]["requires_dist"]
    here = {
        extra
        for extra in item["metadata"]["provides_extra"]
        if all(installed_here(r) for r in requirements(requires, {extra}))
    }
    image = set(item.get("requested_extras", []))
    assert image <= here
    assert here - {"dev", "cuda"} <= image

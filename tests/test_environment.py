"""The conda environments install exactly the pins of requirements.txt; .ci/run runs the README's test command."""
import re


def pins(lines):
    out = {}
    for line in lines:
        line = line.strip().lstrip("-").strip()
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==(\S+)", line)
        if m:
            out[m.group(1).lower()] = m.group(3)
    return out


def test_conda_envs_match_requirements(repo_root):
    req = pins((repo_root / "requirements.txt").read_text().splitlines())
    assert req["keras"].startswith("3.")
    cpu = pins((repo_root / "environment-cpu.yml").read_text().splitlines())
    gpu = pins((repo_root / "environment-gpu.yml").read_text().splitlines())
    assert cpu == req
    tf_version = req.pop("tensorflow-cpu")
    assert gpu.pop("tensorflow") == tf_version  # GPU build of the same TensorFlow
    assert gpu == req


def test_ci_runs_the_readme_test_command(repo_root):
    readme = (repo_root / "README.md").read_text()
    ci = (repo_root / ".ci" / "run").read_text()
    command = [line.strip() for line in ci.splitlines() if line.strip() and not line.startswith("#")][-1]
    assert command == "make test"
    assert "make test" in readme

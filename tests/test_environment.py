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


def _python_files(repo_root, *folders):
    skip = {".venv", ".git", "__pycache__", "output", "sample", "sample_BIN"}
    for folder in folders or (".",):
        for path in sorted((repo_root / folder).rglob("*.py")):
            if not skip & set(path.relative_to(repo_root).parts):
                yield path


def test_no_sys_path_edits_and_tests_and_benchmarks_apart(repo_root):
    """The project is installed (pyproject.toml, `make setup`: pip install -e .), so nothing edits sys.path; what
    tests and benchmarks share lives in testing/, so neither imports the other."""
    edits = [str(p.relative_to(repo_root)) for p in _python_files(repo_root)
             if re.search(r"sys\.path\.(insert|append)|sys\.path\[:0\]|sys\.path \+=", p.read_text())]
    assert edits == []
    imports = re.compile(r"^\s*(from|import)\s+(\w+)", re.M)
    benchmarks = {p.stem for p in (repo_root / "benchmarks").glob("*.py")}
    for path in _python_files(repo_root, "tests"):
        found = {m.group(2) for m in imports.finditer(path.read_text())}
        assert not found & (benchmarks | {"benchmarks"}), f"{path.name} imports a benchmark: {found & benchmarks}"
    for path in _python_files(repo_root, "benchmarks", "testing"):
        found = {m.group(2) for m in imports.finditer(path.read_text())}
        assert not found & {"conftest", "tests"}, f"{path.name} imports the tests"


def test_pyproject_lists_every_top_level_module(repo_root):
    """`pip install -e .` maps exactly these names; a top-level module or package left out would not import."""
    text = (repo_root / "pyproject.toml").read_text()
    modules = {p.stem for p in repo_root.glob("*.py")}
    listed = set(re.findall(r'"(\w+)"', text.split("py-modules", 1)[1].split("]", 1)[0]))
    assert modules == listed
    packages = {p.parent.name for p in repo_root.glob("*/__init__.py")}
    include = set(re.findall(r'"(\w+)\*"', text))
    assert packages == include

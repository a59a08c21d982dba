"""The lab installs like a Python tool, and the versions the README's
explanations depend on are the ones installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from tests.helpers import ROOT, free_port

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def pins() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if line.strip() and not line.startswith("#"))


def test_the_installed_packages_are_the_pinned_ones():
    wrong = {name: (want, metadata.version(name)) for name, want in pins().items()
             if metadata.version(name) != want}
    assert not wrong, (f"installed versions differ from constraints.txt (want, have): {wrong}; "
                       "run `make setup` or re-check the README's explanations and update the pins")


def test_uvloop_bundles_the_libuv_the_readme_explains():
    import uvloop
    from uvloop import loop

    claims = [m for doc in DOCS for m in re.finditer(r"uvloop (\d+\.\d+) ships libuv (\d+\.\d+)",
                                                     doc.read_text())]
    assert claims, "the README (or docs/) no longer says which libuv uvloop ships: say it again"
    v = loop.libuv_get_version()
    libuv = f"{v >> 16}.{(v >> 8) & 0xFF}"
    for m in claims:
        assert uvloop.__version__.startswith(m.group(1)) and libuv == m.group(2), (
            f"the docs say uvloop {m.group(1)} ships libuv {m.group(2)}, but uvloop {uvloop.__version__} "
            f"with libuv {libuv} is installed: the io_uring epoll_ctl explanation may no longer hold; "
            "re-trace `make trace-sanic` and update the docs and constraints.txt")
    assert (v >> 16, (v >> 8) & 0xFF) >= (1, 45), \
        f"libuv {libuv} predates 1.45: it does not register fds through io_uring as the README says"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """`pip install .` into a fresh venv (no editable install, no repository on the path), from a
    copy of the checkout's files as git sees them: setuptools' build/ folder, left by an earlier
    build, would put files that are no longer in the tree into the wheel."""
    venv, src = tmp_path_factory.mktemp("venv"), tmp_path_factory.mktemp("src")
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    p = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", "-c", str(ROOT / "constraints.txt"), str(src)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return venv / "bin" / "epoll-lab"


def run(script: Path, *args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(script), *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_the_console_script_traces_the_c_server_from_another_directory(installed, tmp_path):
    cache = tmp_path / "cache"
    p = run(installed, "trace", "c", "--port", str(free_port()), cwd=tmp_path,
            env={"XDG_CACHE_HOME": str(cache)})
    assert p.returncode == 0, p.stderr
    assert "building the C server once" in p.stderr
    assert list((cache / "epoll-lab").glob("epoll_server-*")), "built into the user's cache folder"
    for name in ("raw.strace", "annotated.log", "events.jsonl", "timeline.html", "trace.json"):
        assert (tmp_path / "traces" / "c" / name).stat().st_size > 0, name
    assert "look first:" in p.stdout
    again = run(installed, "trace", "c", "--port", str(free_port()), "--out", "again", cwd=tmp_path,
                env={"XDG_CACHE_HOME": str(cache)})
    assert again.returncode == 0 and "building" not in again.stderr, again.stderr


def test_the_console_script_builds_and_traces_the_io_uring_server(installed, tmp_path):
    cache = tmp_path / "cache"
    p = run(installed, "trace", "uring", "--port", str(free_port()), cwd=tmp_path,
            env={"XDG_CACHE_HOME": str(cache)})
    assert p.returncode == 0, p.stderr
    assert "-luring" in p.stderr, "built once, linked with liburing"
    assert list((cache / "epoll-lab").glob("uring_server-*")), "built into the user's cache folder"
    assert (tmp_path / "traces" / "uring" / "events.jsonl").stat().st_size > 0


def test_the_console_script_has_version_annotate_timeline_and_trace_a_command(installed, tmp_path):
    v = run(installed, "--version", cwd=tmp_path)
    assert v.returncode == 0 and re.fullmatch(r"epoll-lab \d+\.\d+\.\d+\n", v.stdout), v.stdout
    log = ROOT / "tests" / "fixtures" / "others" / "asyncio.strace"
    a = run(installed, "annotate", str(log), "--format", "jsonl", "-o", "a.jsonl", cwd=tmp_path)
    assert a.returncode == 0 and (tmp_path / "a.jsonl").stat().st_size > 0, a.stderr
    t = run(installed, "timeline", "a.jsonl", "-o", "a.html", cwd=tmp_path)
    assert t.returncode == 0 and "<svg" in (tmp_path / "a.html").read_text(), t.stderr
    c = run(installed, "trace", "--out", "true-run", "--", "true", cwd=tmp_path)
    assert c.returncode == 0 and (tmp_path / "true-run" / "trace.json").exists(), c.stderr


def test_no_compiler_is_one_line_with_the_fix(installed, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("strace", "curl"):
        (bin_dir / tool).symlink_to(subprocess.run(["which", tool], capture_output=True, text=True)
                                    .stdout.strip())
    env = {k: v for k, v in os.environ.items() if k != "CC"}
    env.update(PATH=str(bin_dir), XDG_CACHE_HOME=str(tmp_path / "cache"))
    p = subprocess.run([str(installed), "trace", "c", "--port", str(free_port())], cwd=tmp_path,
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 3 and "no C compiler" in p.stderr and "apt-get install -y gcc" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr


def test_help_names_the_command_as_installed(installed, tmp_path):
    top, sub = run(installed, "--help", cwd=tmp_path), run(installed, "trace", "--help", cwd=tmp_path)
    assert top.returncode == 0 and top.stdout.startswith("usage: epoll-lab "), top.stdout[:200]
    assert sub.stdout.startswith("usage: epoll-lab trace "), sub.stdout[:200]
    assert "python -m tracing" not in top.stdout + sub.stdout
    bad = run(installed, "trace", "--no-such-option", cwd=tmp_path)
    assert bad.returncode == 2 and "(see epoll-lab --help)" in bad.stderr, bad.stderr


def test_the_installed_import_names_cannot_clash_with_a_users_own_packages(installed, tmp_path):
    site = Path(subprocess.run([str(installed.with_name("python")), "-c", "import sysconfig; "
                                "print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True)
                .stdout.strip())
    platlib = Path(subprocess.run([str(installed.with_name("python")), "-c", "import sysconfig; "
                                   "print(sysconfig.get_paths()['platlib'])"], capture_output=True, text=True)
                   .stdout.strip())
    for lib in {site, platlib}:
        assert not (lib / "tracing").exists() and not (lib / "server").exists(), sorted(os.listdir(lib))
    assert (site / "epoll_lab" / "tracing" / "cli.py").exists() and (site / "epoll_lab" / "server").is_dir()
    # A project of the user's own with packages named `tracing` and `server`, first on the path.
    for name in ("tracing", "server"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise RuntimeError('the user\\'s own {name}')\n")
    env = {"PYTHONPATH": str(tmp_path)}
    log = ROOT / "tests" / "fixtures" / "others" / "asyncio.strace"
    a = run(installed, "annotate", str(log), "--format", "jsonl", "-o", "a.jsonl", cwd=tmp_path, env=env)
    assert a.returncode == 0 and "the user's own" not in a.stderr, a.stderr
    s = run(installed, "trace", "sanic", "--port", str(free_port()), "--out", "s", cwd=tmp_path, env=env)
    assert s.returncode == 0, s.stderr
    assert "-m epoll_lab.server" in s.stderr, "the demo server runs under the lab's own name"
    own = run(installed, "trace", "--out", "own", "--", str(installed.with_name("python")), "-c",
              "import tracing", cwd=tmp_path, env=env)
    assert own.returncode == 1 and "the user's own tracing" in (tmp_path / "own" / "server.log").read_text(), \
        "the user's program still imports its own package"


def test_no_doc_or_help_sends_a_user_to_a_page_chromium_no_longer_has():
    # Chromium 156 has no chrome://tracing: a doc may say so, never point there.
    said = [(doc.name, line) for doc in DOCS for line in doc.read_text().splitlines() if "chrome://tracing" in line]
    assert all("has no" in line for _, line in said), said
    annotate = subprocess.run([sys.executable, "-m", "tracing", "annotate", "--help"], cwd=ROOT,
                              capture_output=True, text=True)
    assert annotate.returncode == 0 and "chrome://tracing" not in annotate.stdout, annotate.stdout

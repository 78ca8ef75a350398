"""Every code block of README.md and docs/*.md runs, as written, on the demo data.

Blocks are fenced with a language: ``python`` blocks of one page run in order in one
namespace, ``bash``/``sh`` blocks run in bash with ``set -euo pipefail`` (the package's
``pythia-data`` on PATH), ``console`` blocks (a session: ``$ `` commands and their output)
have their commands run, all the page's sessions in one bash, in order (a slow test: .ci/run
runs it); all in a folder where ``pythia-data demo`` has been run (so ``pythia-demo/...``
paths exist). ``text`` marks what is not code (command synopses,
diagrams, file-name patterns). A block that cannot run here says why on the line before
it: ``<!-- not run: REASON -->`` (a GPU, a package install, the test suite itself); that
list is kept small (:data:`MAX_NOT_RUN`).

A python block whose first line is ``# pythia_data/PATH.py`` is a file of the package: a
new module (written to an overlay folder the package finds it in) or lines added to an
existing one (run in that module's namespace). Both are undone after the page, so the
registries they extend are unchanged for the other tests (``python -m tests.test_docs
PAGE FOLDER OVERLAY`` runs one page by hand).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RUN = {"python", "bash", "sh", "console"}
NOT_CODE = {"text"}
MAX_NOT_RUN = 6

FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)
NOT_RUN = re.compile(r"<!--\s*not run:\s*(?P<why>[^>]*?)\s*-->\s*$")
PACKAGE_FILE = re.compile(r"^# (pythia_data/[\w/]+\.py)\s*$")


def blocks(page: Path) -> list[dict]:
    """The fenced blocks of ``page``: language, code, line, why it is not run (or None)."""
    text = page.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = NOT_RUN.search(before)
        name = page.relative_to(REPO) if page.is_relative_to(REPO) else page
        out.append({"lang": m.group(1).strip(), "code": m.group(2), "line": line,
                    "where": f"{name}:{line}",
                    "not_run": skip.group("why") if skip else None})
    return out


def test_every_block_is_labelled_and_few_are_not_run():
    not_run = []
    for page in PAGES:
        for b in blocks(page):
            assert b["lang"] in RUN | NOT_CODE, (
                f"{b['where']}: fence the block as python, bash or sh (run) or text (not "
                f"code), not {b['lang']!r}")
            if b["not_run"] is not None:
                assert b["lang"] in RUN, f"{b['where']}: a text block is never run anyway"
                assert b["not_run"], f"{b['where']}: say why it is not run"
                not_run.append(b["where"])
    assert len(not_run) <= MAX_NOT_RUN, not_run


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    """A folder where ``pythia-data demo`` has run (what the README's first command does)."""
    from pythia_data.demo import run_demo

    folder = tmp_path_factory.mktemp("docs")
    run_demo(folder / "pythia-demo")
    return folder


def _runnable(page: Path, lang: set[str]) -> list[dict]:
    return [b for b in blocks(page) if b["lang"] in lang and b["not_run"] is None]


def run_python_blocks(page_blocks: list[dict], overlay: Path) -> None:
    """Run python blocks in order in one namespace (package files: see the module notes).
    What the blocks add to the package (modules, registry entries) is undone afterwards."""
    namespace: dict = {"__name__": "__docs__"}
    touched: dict[str, dict] = {}  # module -> its namespace before, dicts copied
    paths: list[tuple[list, str]] = []
    modules_before = set(sys.modules)
    try:
        for b in page_blocks:
            first = b["code"].split("\n", 1)[0]
            target = PACKAGE_FILE.match(first)
            code = compile(b["code"], b["where"], "exec")
            if target is None:
                exec(code, namespace)  # noqa: S102 - the documentation's own examples
                continue
            rel = target.group(1)
            module_name = rel[: -len(".py")].replace("/", ".")
            if module_name.endswith(".__init__"):
                module_name = module_name[: -len(".__init__")]
            if (REPO / rel).is_file():  # lines added to an existing module
                module = importlib.import_module(module_name)
                if module_name not in touched:
                    touched[module_name] = {
                        k: (v, dict(v) if isinstance(v, dict) else None)
                        for k, v in vars(module).items()}
                exec(code, vars(module))  # noqa: S102
                continue
            path = overlay / rel  # a new module of an existing package
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(b["code"], encoding="utf-8")
            parent = importlib.import_module(module_name.rsplit(".", 1)[0])
            if str(path.parent) not in parent.__path__:
                parent.__path__.append(str(path.parent))
                paths.append((parent.__path__, str(path.parent)))
    finally:
        for name, before in touched.items():
            space = vars(sys.modules[name])
            for key in set(space) - set(before):
                del space[key]
            for key, (value, copy) in before.items():
                space[key] = value
                if copy is not None:
                    value.clear()
                    value.update(copy)
        for path_list, entry in paths:
            path_list.remove(entry)
        for name in set(sys.modules) - modules_before:
            if str(overlay) in str(getattr(sys.modules[name], "__file__", "") or ""):
                del sys.modules[name]


PYTHON_PAGES = [p for p in PAGES if _runnable(p, {"python"})]
SHELL_PAGES = [p for p in PAGES if _runnable(p, {"bash", "sh", "console"})]


@pytest.mark.slow
@pytest.mark.parametrize("page", PYTHON_PAGES, ids=lambda p: p.name)
def test_python_blocks_run(page, demo_dir, tmp_path):
    from pythia_data.batches.sinks import SINKS
    from pythia_data.order.registry import ORDER_KINDS
    from pythia_data.tokenize.registry import BACKENDS

    registries = [dict(r) for r in (SINKS, ORDER_KINDS, BACKENDS)]
    page_blocks = _runnable(page, {"python"})
    old = os.getcwd()
    os.chdir(demo_dir)
    try:
        run_python_blocks(page_blocks, tmp_path / "overlay")
    finally:
        os.chdir(old)
    assert [dict(r) for r in (SINKS, ORDER_KINDS, BACKENDS)] == registries  # undone


def _run_bash(where: str, code: str, folder) -> None:
    from tests.conftest import subprocess_env

    env = subprocess_env()
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    proc = subprocess.run(["bash", "-c", "set -euo pipefail\n" + code], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{where}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"


# scale.md's blocks (work units on all cores, ~2.5 s of commands) are slow-marked: .ci/run
# runs them
_SLOW_SHELL_PAGES = {"scale.md"}


@pytest.mark.slow
@pytest.mark.parametrize("page", [
    pytest.param(p, id=p.name, marks=pytest.mark.slow if p.name in _SLOW_SHELL_PAGES else ())
    for p in SHELL_PAGES if _runnable(p, {"bash", "sh"})])
def test_shell_blocks_run(page, demo_dir):
    for b in _runnable(page, {"bash", "sh"}):
        _run_bash(b["where"], b["code"], demo_dir)


@pytest.mark.slow  # whole sessions of commands (several seconds of CPU): .ci/run runs them
@pytest.mark.parametrize("page", [p for p in SHELL_PAGES if _runnable(p, {"console"})],
                         ids=lambda p: p.name)
def test_console_sessions_run(page, demo_dir):
    session = _runnable(page, {"console"})
    commands = [line[2:] for b in session for line in b["code"].splitlines()
                if line.startswith("$ ")]
    assert commands, f"{session[0]['where']}: a console block without '$ ' commands"
    _run_bash(session[0]["where"], "\n".join(commands), demo_dir)


def _main(argv) -> int:
    page, folder, overlay = Path(argv[0]).resolve(), argv[1], Path(argv[2]).resolve()
    page_blocks = _runnable(page, {"python"})
    os.chdir(folder)
    run_python_blocks(page_blocks, overlay)
    print(json.dumps({"page": str(page), "ok": True}))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))

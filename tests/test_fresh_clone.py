"""A copy of the repository's tracked files, alone in an empty folder, passes its quick tests.

What a new user gets from ``git clone``: only what git tracks, nothing beside it, no data cache in
``HOME``, no ``VGGBENCH_DATA``. The quick subset (``pytest -m "not slow" -x``) must pass there on
the committed test data alone, so no test can come to depend on a file outside the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Set in the copy's own run, so this test never starts a copy of a copy.
INSIDE_ENV_VAR = "VGGBENCH_FRESH_CLONE_RUN"
QUICK_RUN_TIMEOUT_S = 1800


def _tracked_files() -> list:
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=60)
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"not a git checkout with git on PATH ({err}): nothing to copy as a clone would")
    return [name for name in listed.stdout.decode().split("\0") if name]


@pytest.mark.slow  # runs the whole quick subset once more, in the copy
@pytest.mark.fresh_clone
@pytest.mark.skipif(os.environ.get(INSIDE_ENV_VAR) == "1", reason="this is the copy's own run")
def test_the_tracked_files_alone_pass_the_quick_tests(tmp_path):
    clone, home = tmp_path / "clone", tmp_path / "home"
    home.mkdir()
    copied = 0
    for name in _tracked_files():
        source = REPO / name
        if source.is_file():  # a tracked file deleted in the work tree is not in the next commit either
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name, follow_symlinks=False)
            copied += 1
    assert (clone / "tests" / "data" / "LICENSE").is_file() and copied > 50
    env = {key: value for key, value in os.environ.items()
           if key not in ("VGGBENCH_DATA", "XDG_CACHE_HOME", "PYTHONPATH", "MXNET_HOME")}
    env.update(HOME=str(home), PYTHONPATH=str(clone), PYTHONDONTWRITEBYTECODE="1", **{INSIDE_ENV_VAR: "1"})
    imported = subprocess.run([sys.executable, "-c", "import vggbench; print(vggbench.__file__)"], cwd=clone, env=env,
                              capture_output=True, text=True, timeout=120)
    assert Path(imported.stdout.strip()).resolve() == (clone / "vggbench" / "__init__.py").resolve(), imported.stderr
    run = subprocess.run([sys.executable, "-m", "pytest", "-m", "not slow and not fresh_clone", "-x", "-q",
                          "-p", "no:cacheprovider", "tests"], cwd=clone, env=env, capture_output=True, text=True,
                         timeout=QUICK_RUN_TIMEOUT_S)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert " passed" in run.stdout.splitlines()[-1]
    assert not (home / ".cache" / "vggbench").exists()  # nothing was downloaded into the (empty) HOME

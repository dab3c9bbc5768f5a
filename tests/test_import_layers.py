"""The import layers of pyproject.toml's [tool.importlinter] hold: the engine (bench) imports no method, baseline,
sweep or report; methods and baselines import no sweep or report; no package has an import cycle between its
children. The same check as `lint-imports` in .ci/run, here so that the default test run catches a broken layer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# importlinter.cli.lint_imports is the function behind the `lint-imports` command; a child process because it puts
# its working folder on sys.path and sets up logging, which a test process should not inherit
LINT = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"


def test_the_import_contracts_are_kept():
    # the child must analyse this checkout, not an installed copy elsewhere: the checkout goes first on its path
    path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    out = subprocess.run([sys.executable, "-c", LINT], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    report = out.stdout + out.stderr
    assert "Contracts:" in report, f"lint-imports did not check the contracts of {ROOT / 'pyproject.toml'}:\n{report}"
    broken = report[report.find("Broken contracts"):] if "Broken contracts" in report else report
    if out.returncode != 0:
        pytest.fail(f"an import contract of pyproject.toml is broken:\n{broken}", pytrace=False)

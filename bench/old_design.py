"""The design of the last round, for before-and-after figures in one run.

``old_design(folder)`` checks commit ``OLD_DESIGN`` (the last commit before this round's request
path, vectorized scoring core and book schema) out into a temporary git worktree under
``folder`` and trains its artifact folder there, with that commit's own training code on its own
copy of the project book. The caller removes the worktree (``remove_old_design``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
OLD_DESIGN: Final = "2a83d0e"


def old_design(folder: Path) -> tuple[Path, Path]:
    """(worktree of ``OLD_DESIGN``, the artifact folder its own training wrote)."""
    tree = folder / "old-design"
    subprocess.run(
        ["git", "worktree", "add", "--detach", "--quiet", str(tree), OLD_DESIGN],
        cwd=REPO_ROOT,
        check=True,
    )
    artifacts = folder / "old-artifacts"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    subprocess.run(
        [
            *(sys.executable, "-m", "training", "--data", "Data/Loan_Data.csv"),
            *("--out", str(artifacts), "--no-mlflow", "--quiet"),
        ],
        cwd=tree,
        env={**env, "PYTHONPATH": str(tree)},
        check=True,
    )
    return tree, artifacts


def remove_old_design(tree: Path) -> None:
    subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO_ROOT, check=False)
    shutil.rmtree(tree, ignore_errors=True)

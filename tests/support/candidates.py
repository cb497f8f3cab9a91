"""Train an artifact folder for ONE named candidate (logistic regression or random forest).

``python -m training`` exports whichever candidate wins on held-out F1, but the batch figures are
wanted for both model types. The training package's own ``TrainingConfig(candidates=...)`` runs the
same pipeline (split, statistics, calibration, ONNX parity check, manifest) with a single
candidate, so the forced folder is a real artifact folder that serving verifies and loads.

    .venv/bin/python -m tests.support.candidates --candidate random_forest --out /tmp/rf-artifacts
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.candidates import CANDIDATES, candidate_named
from training.pipeline import DEFAULT_SEED, TrainingConfig, run_training
from training.progress import Progress

CANDIDATE_NAMES = tuple(candidate.name for candidate in CANDIDATES)


def train_candidate(
    name: str, data: Path, out: Path, seed: int = DEFAULT_SEED, quiet: bool = True
) -> dict[str, Any]:
    """Write ``out`` with ``name`` as the only candidate (no MLflow); return the manifest."""
    config = TrainingConfig(
        data=data, out=out, seed=seed, track=False, candidates=(candidate_named(name),)
    )
    outcome = run_training(config, Progress(quiet=quiet))
    return outcome.manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--candidate", choices=CANDIDATE_NAMES, required=True)
    parser.add_argument("--data", type=Path, default=Path("Data/Loan_Data.csv"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    manifest = train_candidate(args.candidate, args.data, args.out, args.seed)
    print(f"wrote {args.out}: {manifest['model']['name']} ({manifest['model_version']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

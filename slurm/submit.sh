#!/usr/bin/env bash
# slurm/submit.sh FILE [OPTIONS]: submit a sweep's missing/failed/interrupted/dead indices as a
# SLURM array job (docs/contract.md). A thin wrapper; see `python -m studentteacher.sweep submit --help`
# for the options (--partition --time --mem --gpus --cpus-per-task --requeue --all --dry-run).
set -euo pipefail
exec "${PYTHON:-python}" -m studentteacher.sweep submit "$@"

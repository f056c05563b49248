#!/usr/bin/env bash
# Regenerate every figure from its sweep files.
#
#   figures/reproduce.sh [--small] [--submit | --figures-only]
#
#   --small         the reduced-scale sweeps (experiments/sweeps/figures/*_small.yaml): a few
#                   minutes on a 2-core CPU; what tests/test_figures.py runs
#   --submit        submit the sweeps as SLURM array jobs (python -m studentteacher.sweep submit)
#                   instead of running them here, then stop; rerun with --figures-only once
#                   `python -m studentteacher.sweep status FILE` shows them completed
#   --figures-only  draw the figures from the runs already there; run nothing
#
# Runs go to $FIGURE_RUNS (default reproduction/runs, the full-scale runs' logged data kept in the
# repository, or runs/figures-small with --small), one folder per
# sweep file (its stem); figures (PNG + PDF) to $FIGURE_OUT (default figures/png/full, or
# figures/png/small). Local runs use figures/run_sweeps.py: the open (missing / interrupted) tasks
# of each file, one after the other in one process; completed tasks are not rerun, so running
# this again resumes an interrupted reproduction. Extra arguments for `sweep submit` (e.g.
# --partition gpu --gpus 1 --time 12:00:00) can be given in $SUBMIT_OPTIONS.
set -euo pipefail

small=0 submit=0 figures_only=0
for arg in "$@"; do
    case "$arg" in
        --small) small=1 ;;
        --submit) submit=1 ;;
        --figures-only) figures_only=1 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "error: unknown argument '$arg'; valid: --small --submit --figures-only" >&2; exit 2 ;;
    esac
done

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
python="${PYTHON:-python}"
if [[ $small == 1 ]]; then suffix=_small; scale=small; default_runs=runs/figures-small
else suffix=; scale=full; default_runs="$repo/reproduction/runs"; fi
runs="${FIGURE_RUNS:-$default_runs}"
out="${FIGURE_OUT:-$repo/figures/png/$scale}"
export STUDENTTEACHER_RUNS="$runs"      # observer of each sweep: $runs/<file stem>
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"  # tiny tensors: one thread per process is ~10x faster on a shared CPU
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
sweeps="$repo/experiments/sweeps/figures"

# figure script (drawn in this order) -> the sweep files behind it, as stems without the _small
# suffix, in the order of its --runs; after '|' the full-scale-only ones (no small variant; passed
# where their runs are there): Figure 2's seeds 4-6, its DrMMD runs to 30 000 epochs and its SrMMD arm
figures='
mmd_flow_student_teacher  mmd_flow_student_teacher drmmd_student_teacher
diffusion_fixed_noise     diffusion_fixed_noise drmmd_student_teacher mmd_flow_student_teacher
drmmd_student_teacher     drmmd_student_teacher | drmmd_student_teacher_seeds drmmd_student_teacher_30k srmmd_student_teacher
drmmd_lambda_ablation     drmmd_lambda_ablation drmmd_student_teacher
readout_ablation          readout_ablation drmmd_student_teacher mmd_flow_student_teacher
three_rings               three_rings
adaptive_lambda           three_rings
three_rings_lambda        three_rings_lambda
mmd_flow_gaussians        mmd_flow_gaussians
adaptive_bandwidth        adaptive_bandwidth
dmmd_discriminator        dmmd
dmmd_samples              dmmd dmmd_baselines dmmd_baselines_adaptive
dmmd_choices              dmmd dmmd_choices
dmmd_samplers             dmmd_samplers
srmmd_toys                srmmd_toys
'
# read it: the figures in order, what is behind each, and the sweep files to run (each once, in the
# table's order; the full-scale-only ones last)
order=() files=() full_files=()
declare -A behind=() behind_full=() listed=()
while read -r name stems; do
    [[ -n $name ]] || continue
    order+=("$name")
    IFS='|' read -r "behind[$name]" "behind_full[$name]" <<<"$stems"
    for stem in ${behind[$name]}; do
        [[ -n ${listed[$stem]:-} ]] || { listed[$stem]=1; files+=("$sweeps/$stem$suffix.yaml"); }
    done
    for stem in ${behind_full[$name]}; do full_files+=("$sweeps/$stem.yaml"); done
done <<<"$figures"
if [[ $small == 0 ]]; then files+=("${full_files[@]}"); fi

start=$(date +%s)
echo "== $scale reproduction: runs in $runs, figures in $out"
if [[ $figures_only == 0 ]]; then
    if [[ $submit == 1 ]]; then
        for file in "${files[@]}"; do
            # shellcheck disable=SC2086
            "$python" -m studentteacher.sweep submit "$file" ${SUBMIT_OPTIONS:-}
        done
        echo "submitted; when 'python -m studentteacher.sweep status FILE' shows every task done, run:"
        echo "  FIGURE_RUNS=$runs $0 ${suffix:+--small }--figures-only"
        exit 0
    fi
    status=0
    "$python" "$here/run_sweeps.py" "${files[@]}" || status=$?
    if [[ $status != 0 && $status != 1 ]]; then
        echo "error: running the sweeps ended with status $status (interrupted or invalid); rerun to resume" >&2
        exit "$status"
    fi
    echo "== sweeps done in $(( $(date +%s) - start )) s"
fi

for name in "${order[@]}"; do
    dirs=()
    for stem in ${behind[$name]}; do dirs+=("$runs/$stem$suffix"); done
    if [[ $small == 0 ]]; then
        for stem in ${behind_full[$name]}; do [[ -d "$runs/$stem" ]] && dirs+=("$runs/$stem"); done
    fi
    "$python" "$here/$name.py" --runs "${dirs[@]}" --out "$out"
done
echo "== $scale reproduction done in $(( $(date +%s) - start )) s: figures in $out"

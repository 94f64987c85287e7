#!/bin/bash
# The data sets' measurements in docs/data.md: for each data set, its fetcher on a mirror of
# files in the published format, a two-epoch train.py of its config and evaluate.py, each
# under /usr/bin/time -v (wall time, peak memory); the epoch lines and evaluate's last lines.
#
#   tools/bench_data_sets.sh MIRROR WORK [name ...]     (names: mnist norb cifar10 cifar100 svhn)
#
# MIRROR holds <name>/ folders of published files (python tests/published_formats.py MIRROR writes
# synthetic ones of the published sizes; the fetchers read them with --no-checksum). WORK is a
# scratch folder: the npz files, runs/ and the logs go there, never into the kit.
set -euo pipefail
kit=$(cd "$(dirname "$0")/.." && pwd)
mirror=$(cd "$1" && pwd); mkdir -p "$2"; work=$(cd "$2" && pwd); shift 2
names=${*:-mnist norb cifar10 cifar100 svhn}
export MPLBACKEND=Agg
lscpu | grep 'Model name'
cd "$work"
measure() {  # label, command...: the command's output, then its wall time and peak memory
    local label=$1; shift
    /usr/bin/time -v -o "$work/time.txt" "$@" > "$work/$label.log" 2>&1 || { tail -3 "$work/$label.log"; return 1; }
    grep -E '^(Epoch|CE|Accuracy|[a-z0-9]+: wrote)' "$work/$label.log" || true
    echo "$label: wall $(grep 'Elapsed (wall' "$work/time.txt" | awk '{print $NF}'), peak memory" \
         "$(( $(grep 'Maximum resident' "$work/time.txt" | awk '{print $NF}') / 1024 )) MiB"
}
for name in $names; do
    echo "== $name"
    measure "$name-fetch" python "$kit/data/$name.py" --mirror "$mirror/$name" --no-checksum --out "data/$name.npz"
    measure "$name-train" python "$kit/train.py" "$kit/configs/${name}_convnet.yaml" --epochs 2 --no-display
    measure "$name-evaluate" python "$kit/evaluate.py" "$kit/configs/${name}_convnet.yaml"
done

#!/usr/bin/env bash
# Instructions per render of each benchmark case, counted by callgrind (repeatable on a busy
# machine, unlike wall-clock time): (instructions of N+1 renders − of 1 render) / N.
# Usage: xtask/assets/render-instructions.sh <render_count binary> [N]
set -euo pipefail
bin=$1
n=${2:-20}
total() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
"$bin" --list | while read -r case; do
    one=$(total "$case" 1)
    many=$(total "$case" $((n + 1)))
    printf '%-36s %12d instructions/render\n' "$case" $(((many - one) / n))
done

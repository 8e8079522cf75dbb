#!/usr/bin/env bash
# Fails when a function of the product (everything outside tests/) is longer
# than MAX lines (default 150), listing each one with its file and line.
# Function extents come from universal-ctags (Debian universal-ctags), which
# parses C++ and CUDA: a function's lines run from its signature to the
# closing brace. Long functions hide the structure the headers promise; split
# them into named steps.
#   tests/lint/function_length.sh [MAX]
set -euo pipefail
cd "$(dirname "$0")/../.."
max=${1:-150}
if ! command -v ctags >/dev/null || ! ctags --version 2>/dev/null | grep -q 'Universal Ctags'; then
  echo "SKIP: universal-ctags is not installed (launch/setup installs it)"
  exit 77
fi
long=$(ctags -x --languages=C++ --langmap=C++:+.cu --kinds-C++=f --fields=+ne \
         --_xformat='%{end} %{line} %F %N' -R kernels model parallel data eval trainer |
       awk -v max="$max" '$1 - $2 + 1 > max { printf "%s:%s %s: %d lines\n", $3, $2, $4, $1 - $2 + 1 }' |
       sort)
count=$(ctags -x --languages=C++ --langmap=C++:+.cu --kinds-C++=f --fields=+ne \
          --_xformat='%N' -R kernels model parallel data eval trainer | wc -l)
if [[ -z "$count" || "$count" -lt 100 ]]; then
  echo "FAIL: ctags found only ${count:-0} functions; the check itself is broken"
  exit 1
fi
if [[ -n "$long" ]]; then
  echo "functions longer than $max lines (of $count):"
  echo "$long"
  exit 1
fi
echo "$count functions, none longer than $max lines"

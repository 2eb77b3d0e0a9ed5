#!/bin/bash
# Checks tests/model/coherence.pml exhaustively with spin (tests/model/CMakeLists.txt).
#   run_spin.sh MODEL WORKDIR safety|liveness [spin -D flags...]
# safety:   assertions (single writer, last value read, accepted messages, all requests
#           complete at the end) and invalid end states (deadlock), full state space;
# liveness: the ltl property requests_complete under weak fairness (-a -f).
# Fails if pan reports any error or does not finish its search.
set -eu
model=$1 work=$2 mode=$3
shift 3
rm -rf "$work" && mkdir -p "$work" && cd "$work"
spin "$@" -a "$model" >spin.log
case $mode in
    safety) gcc -O0 -DSAFETY -DNOCLAIM -DCOLLAPSE -o pan pan.c
            ./pan -m1000000 >pan.log 2>&1 || true ;;
    liveness) gcc -O0 -DCOLLAPSE -DNFAIR=4 -o pan pan.c
              ./pan -m1000000 -a -f >pan.log 2>&1 || true ;;
esac
grep -E "^State-vector|states, stored|errors:|elapsed" pan.log
if ! grep -q "errors: 0" pan.log ||
    grep -qE "^pan:[0-9]*:? *(assertion violated|invalid end state|acceptance cycle)|max search depth too small|Search not completed" pan.log; then
    grep -vE "^\s+coherence.pml:|^unreached|^\s+\(" pan.log | head -60
    echo "FAIL: spin $mode $*"
    exit 1
fi
echo "PASS: spin $mode $*"

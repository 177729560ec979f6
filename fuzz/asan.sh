#!/usr/bin/env bash
# The native data path's tests once under AddressSanitizer and UBSan
# (docs/DEVELOPERS.md): media._native built with -fsanitize=address,undefined in
# a copy of the tree (the checkout's own build is left alone: others may be
# running tests on it), then its tests run there with libasan preloaded.
#   bash fuzz/asan.sh [pytest arguments]
# Needs gcc with libasan (Debian: gcc), python3-dev, libssl-dev.
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
tar --exclude=./.git --exclude=./.venv --exclude='*.so' --exclude=./fuzz/build \
  --exclude=./.hypothesis --exclude=./.mypy_cache --exclude=./bench/anchor -cf - . \
  | tar -xf - -C "$work"
cd "$work"
CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
  LDFLAGS="-fsanitize=address,undefined" python setup.py -q build_ext --inplace
ls media/_native*.so >/dev/null  # setup.py warns instead of failing: fail here
# Python's own allocator hides overflows of its objects from ASan: plain malloc.
export LD_PRELOAD="$(gcc -print-file-name=libasan.so)" PYTHONMALLOC=malloc
# CPython and OpenSSL keep memory to the end of the process: no leak report.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
python -c 'import media._native as n, sys; print("ASan build:", n.__file__); sys.exit(not n.__file__.startswith(sys.argv[1]))' "$work"
# (the pump's thread with its own tests, and under real peers: the relay's)
python -m pytest -p no:cacheprovider -n 0 -q tests/media/test_native_srtp.py \
  tests/media/test_native_forward.py tests/media/test_native_fuzz.py \
  tests/media/test_native_pump.py tests/media/test_relay.py tests/media/test_calls.py "$@"

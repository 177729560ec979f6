#!/usr/bin/env bash
# The libFuzzer targets of the native data path (docs/DEVELOPERS.md), with
# AddressSanitizer and UndefinedBehaviorSanitizer, into fuzz/build/.
#   bash fuzz/build.sh            build
#   bash fuzz/build.sh --run 60   build, then run each target 60 seconds from
#                                 fuzz/seeds.py's seeds; exit status 1 on a crash
# Needs clang (Debian: apt-get install -y clang) and OpenSSL 3's headers (libssl-dev).
set -euo pipefail
cd "$(dirname "$0")/.."
CC="${CC:-clang}"
OUT=fuzz/build
mkdir -p "$OUT"
FLAGS=(-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
  -fno-sanitize-recover=undefined -Wall -Wextra -Werror -Imedia/native)
"$CC" "${FLAGS[@]}" fuzz/fuzz_srtp.c media/native/wl_srtp.c -lcrypto -o "$OUT/fuzz_srtp"
"$CC" "${FLAGS[@]}" fuzz/fuzz_rtp.c media/native/wl_rtp.c -o "$OUT/fuzz_rtp"
echo "built $OUT/fuzz_srtp $OUT/fuzz_rtp"

if [ "${1:-}" = "--run" ]; then
  seconds="${2:-60}"
  python fuzz/seeds.py "$OUT/corpus"
  status=0
  for target in fuzz_srtp fuzz_rtp; do
    # -detect_leaks=0: OpenSSL keeps its provider tables to the end of the process
    "$OUT/$target" -max_total_time="$seconds" -max_len=2100 -print_final_stats=1 \
      -detect_leaks=0 -artifact_prefix="$OUT/$target-" "$OUT/corpus/$target" \
      > "$OUT/$target.log" 2>&1 || status=1
    grep -E "^(Done|stat::new_units_added|#[0-9]+[[:space:]]+(INITED|DONE))|ERROR|SUMMARY" \
      "$OUT/$target.log" | sed "s/^/$target: /" || true
  done
  exit "$status"
fi

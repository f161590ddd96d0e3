#!/usr/bin/env bash
# Side-by-side benchmark: tapefs mount vs rclone mount vs raw local disk, on
# the same data, in one run. It is not a test: it asserts nothing and prints
# a table of times and ratios.
#
#   bench/bench.sh                 # 2,000 tapes + a 200 MiB tape (defaults)
#   TAPES=500 LARGE=64MiB bench/bench.sh
#   BENCH_KEEPALIVE=0 bench/bench.sh   # server closes connections (see below)
#   BENCH_SERVER_CPUS=1 BENCH_CLIENT_CPUS=0 bench/bench.sh
#                                  # the S3 server on its own CPUs (see below)
#
# Needs: root and /dev/fuse. It installs what a fresh machine lacks: rclone
# and fuse3 (rclone mount needs fusermount) from Debian, and versitygw.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Makefile's deps target installs Debian packages when missing (and
# versitygw); here the packages are the benchmark's own.
make -s deps DEB_PACKAGES="rclone fuse3"

TAPES=${TAPES:-2000}
LARGE=${LARGE:-200MiB}
# A warm row is the median of WARM runs and a copy row the median of COPIES
# copies: one run of either moved by a third from one run of the script to
# the next on a 2-core VM. A cold row is one run (each needs its own
# drop_caches, and rclone's cold grep takes seconds).
WARM=${WARM:-5}
COPIES=${COPIES:-3}
PORT=${PORT:-$((20000 + RANDOM % 20000))}
WORK=$(mktemp -d /tmp/tapefs-bench.XXXXXX)
export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret AWS_REGION=us-east-1
# The server is plain HTTP on loopback. rclone's AWS SDK (v1.60, Debian 12)
# refuses to start when AWS_CA_BUNDLE is set ("unable to load custom CA bundle,
# HTTPClient's transport unsupported type"), and no CA is needed here.
unset AWS_CA_BUNDLE
# go derives its build cache from XDG_CACHE_HOME: pin it before that moves into
# $WORK, or every run rebuilds everything (minutes, cgo SQLite included) into a
# throwaway cache.
export GOCACHE=${GOCACHE:-$(go env GOCACHE)}
export XDG_DATA_HOME=$WORK/xdg/data XDG_STATE_HOME=$WORK/xdg/state XDG_CACHE_HOME=$WORK/xdg/cache XDG_RUNTIME_DIR=$WORK/xdg/run
VGW=$(scripts/install-versitygw.sh)
BIN=$WORK/bin
mkdir -p "$BIN" "$WORK/s3root/bench" "$WORK/mnt/tapefs" "$WORK/mnt/rclone" "$WORK/mnt/copyin"
go build -tags sqlite_fts5 -o "$BIN/tapefs" ./cmd/tapefs
go build -o "$BIN/tapegen" ./cmd/tapegen

cleanup() {
  set +e
  "$BIN/tapefs" unmount "$WORK/mnt/tapefs" 2>/dev/null
  fusermount -u "$WORK/mnt/rclone" 2>/dev/null || umount -l "$WORK/mnt/rclone" 2>/dev/null
  [ -n "${RCLONE_PID:-}" ] && kill "$RCLONE_PID" 2>/dev/null
  [ -n "${VGW_PID:-}" ] && kill "$VGW_PID" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "generating $TAPES tapes and one $LARGE tape ..." >&2
"$BIN/tapegen" -out "$WORK/local" -seed 1 -v2 "$TAPES" -large "$LARGE" >/dev/null
# The large tape is large/large.jsonl: look for the biggest tape in the whole
# tree, not only at the top (where ls -S found a 30 KB tape). awk reads all of
# its input, where head would exit early and, under pipefail, stop the script
# with SIGPIPE.
LARGE_KEY=$(cd "$WORK/local" && find . -type f -name '*.jsonl' -printf '%s %P\n' | sort -rn | awk 'NR == 1 {print $2}')
LARGE_NAME=${LARGE_KEY##*/}

# --keep-alive: HTTP connections stay open between requests, as AWS S3 and
# other S3 servers keep them; versitygw's default closes each one after a
# single request, so that every GET of both mounts paid a TCP connect. Set
# BENCH_KEEPALIVE=0 for that default.
VGW_FLAGS=()
[ "${BENCH_KEEPALIVE:-1}" = 0 ] || VGW_FLAGS=(--keep-alive)
# BENCH_SERVER_CPUS and BENCH_CLIENT_CPUS (taskset lists, e.g. 1 and 0) run
# the S3 server on CPUs of its own and everything else (mounts, commands)
# on the others: what a client of a server on another machine sees, where
# by default the server takes its CPU time from the mounts' (on a 2-core
# machine, an upload to versitygw keeps both cores busy).
PIN=()
if [ -n "${BENCH_SERVER_CPUS:-}" ]; then
  taskset -pc "${BENCH_CLIENT_CPUS:?BENCH_SERVER_CPUS needs BENCH_CLIENT_CPUS}" $$ >/dev/null
  PIN=(taskset -c "$BENCH_SERVER_CPUS")
fi
ROOT_ACCESS_KEY=$AWS_ACCESS_KEY_ID ROOT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY \
  "${PIN[@]}" "$VGW" --port "127.0.0.1:$PORT" "${VGW_FLAGS[@]}" posix "$WORK/s3root" >"$WORK/versitygw.log" 2>&1 &
VGW_PID=$!
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

export RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other
export RCLONE_CONFIG_BENCH_ENDPOINT=http://127.0.0.1:$PORT RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true
export RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
export RCLONE_CONFIG_BENCH_REGION=us-east-1
echo "uploading the corpus to the S3 server ..." >&2
rclone copy --transfers 16 "$WORK/local" bench:bench

S3URL="s3://bench?endpoint=http://127.0.0.1:$PORT&use_path_style=true&region=us-east-1"

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# t CMD...: seconds taken by CMD (output discarded). A failure is reported on
# stderr: its time would otherwise pass for a fast run.
t() {
  local s e rc=0
  s=$(date +%s.%N)
  "$@" >/dev/null 2>"$WORK/t.err" || rc=$?
  e=$(date +%s.%N)
  [ "$rc" = 0 ] || echo "warning: exit $rc: $* ($(tail -n 1 "$WORK/t.err"))" >&2
  echo "$e - $s" | bc -l
}

# median: the median of the numbers on stdin, one per line.
median() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

# tw CMD...: the median time of WARM runs of CMD.
tw() { for _ in $(seq "$WARM"); do t "$@"; done | median; }

mount_tapefs() {
  "$BIN/tapefs" mount "$WORK/mnt/tapefs" --backend "$S3URL" --daemon --cache-dir "$WORK/cache-tapefs" --cache-max-size 2GiB
}
# rclone uploads a written file after close, once it has been left alone for
# --vfs-write-back (5 s by default); 0s starts that upload at once, which is
# rclone's best case for the copy_in_stored row.
mount_rclone() {
  rclone mount bench:bench "$WORK/mnt/rclone" --vfs-cache-mode full --cache-dir "$WORK/cache-rclone" \
    --dir-cache-time 1h --vfs-write-back 0s --daemon
  for _ in $(seq 100); do mountpoint -q "$WORK/mnt/rclone" && break; sleep 0.1; done
}

# copy_once SRC DST STORED: copies SRC to DST and prints two times from that
# one copy: until cp returns (after close), and until STORED (the object's
# file in the S3 server's directory, or DST on local disk) holds all of
# SRC's bytes, i.e. until other clients of the bucket can read the copy.
# tapefs returns from close only after the upload; rclone returns before it
# and uploads in the background. versitygw makes an object visible only
# when it is complete. DST is removed after, and the next copy starts once
# STORED is gone.
copy_once() {
  local src=$1 dst=$2 stored=$3 want s e1 e2
  want=$(stat -c %s "$src")
  s=$(date +%s.%N)
  cp "$src" "$dst" 2>"$WORK/t.err" || echo "warning: cp $src $dst failed: $(tail -n 1 "$WORK/t.err")" >&2
  e1=$(date +%s.%N)
  for _ in $(seq 12000); do
    [ "$(stat -c %s "$stored" 2>/dev/null)" = "$want" ] && break
    sleep 0.005
  done
  e2=$(date +%s.%N)
  [ "$(stat -c %s "$stored" 2>/dev/null)" = "$want" ] || echo "warning: $stored never held the $want bytes of $src" >&2
  echo "$(echo "$e1 - $s" | bc -l) $(echo "$e2 - $s" | bc -l)"
  rm -f "$dst"
  for _ in $(seq 2000); do [ -e "$stored" ] || break; sleep 0.005; done
  sync # for the next copy, as run_suite does before the first
}

# copy_in NAME SRC DST STORED: sets R[NAME,copy_in] and
# R[NAME,copy_in_stored], each the median of COPIES copies (copy_once).
copy_in() {
  local name=$1 times
  times=$(for _ in $(seq "$COPIES"); do copy_once "$2" "$3" "$4"; done)
  R[$name,copy_in]=$(awk '{print $1}' <<<"$times" | median)
  R[$name,copy_in_stored]=$(awk '{print $2}' <<<"$times" | median)
}

declare -A R
run_suite() { # name dir stored-dir
  local name=$1 dir=$2 stored=$3
  drop_caches
  R[$name,ls_cold]=$(t ls -l "$dir")
  R[$name,ls_warm]=$(tw ls -l "$dir")
  drop_caches
  R[$name,grep_cold]=$(t sh -c "cd '$dir' && grep -l '\"tools/call\"' *.jsonl")
  R[$name,grep_warm]=$(tw sh -c "cd '$dir' && grep -l '\"tools/call\"' *.jsonl")
  drop_caches
  R[$name,read_cold]=$(t cat "$dir/$LARGE_KEY")
  R[$name,read_warm]=$(tw cat "$dir/$LARGE_KEY")
  # As the cold rows start after drop_caches: without it, the writeback of
  # what the rows before wrote (the cold read's disk cache, the previous
  # copy) lands on whichever copy runs next, the S3 server's included.
  sync
  copy_in "$name" "$WORK/local/$LARGE_KEY" "$dir/copied-$LARGE_NAME" "$stored/copied-$LARGE_NAME"
}

echo "mounting tapefs ..." >&2
R[tapefs,mount]=$(t mount_tapefs)
echo "mounting rclone ..." >&2
R[rclone,mount]=$(t mount_rclone)
R[local,mount]=0

echo "running local disk ..." >&2;  run_suite local "$WORK/local" "$WORK/local"
echo "running tapefs ..." >&2;      run_suite tapefs "$WORK/mnt/tapefs" "$WORK/s3root/bench"
echo "running rclone ..." >&2;      run_suite rclone "$WORK/mnt/rclone" "$WORK/s3root/bench"

# A later mount of the same store: tapefs keeps its sidecar and only
# reconciles it with a listing; rclone starts as it always does.
echo "remounting ..." >&2
"$BIN/tapefs" unmount "$WORK/mnt/tapefs"
fusermount -u "$WORK/mnt/rclone" 2>/dev/null || umount -l "$WORK/mnt/rclone"
for _ in $(seq 100); do mountpoint -q "$WORK/mnt/rclone" || break; sleep 0.1; done
R[tapefs,remount]=$(t mount_tapefs)
R[rclone,remount]=$(t mount_rclone)
R[local,remount]=0

size_mib=$(( $(stat -c %s "$WORK/local/$LARGE_KEY") / 1048576 ))
printf '\n%d tapes (%d objects, %s), large tape %d MiB, S3 server versitygw on loopback %s\n' \
  "$TAPES" "$(find "$WORK/local" -type f | wc -l)" "$(du -sh "$WORK/local" | cut -f1)" "$size_mib" "${VGW_FLAGS[*]:-(connections closed after each request)}"
printf 'cold rows: one run each; warm rows: median of %d runs; copy rows: median of %d copies\n' "$WARM" "$COPIES"
[ -z "${BENCH_SERVER_CPUS:-}" ] || printf 'the S3 server on CPUs %s, the mounts and commands on CPUs %s\n' "$BENCH_SERVER_CPUS" "$BENCH_CLIENT_CPUS"
printf '%-22s %10s %10s %10s %14s %14s\n' "operation" "local s" "tapefs s" "rclone s" "rclone/tapefs" "tapefs/local"
for op in mount remount ls_cold ls_warm grep_cold grep_warm read_cold read_warm copy_in copy_in_stored; do
  l=${R[local,$op]}; a=${R[tapefs,$op]}; b=${R[rclone,$op]}
  # A mount has no local-disk counterpart (0 s): no ratio to it.
  vs_local=-
  [ "$l" = 0 ] || vs_local=$(printf '%.1fx' "$(echo "$a / ($l + 0.0001)" | bc -l)")
  printf '%-22s %10.3f %10.3f %10.3f %13.1fx %14s\n' "$op" "$l" "$a" "$b" \
    "$(echo "$b / ($a + 0.0001)" | bc -l)" "$vs_local"
done
for op in read_cold read_warm copy_in copy_in_stored; do
  for n in local tapefs rclone; do
    printf '%s %s: %.0f MB/s\n' "$n" "$op" "$(echo "$size_mib * 1.048576 / (${R[$n,$op]} + 0.0001)" | bc -l)"
  done
done

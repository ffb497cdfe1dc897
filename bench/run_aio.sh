#!/usr/bin/env bash
# TCP echo on 127.0.0.1, 50 connections: parx::aio's server against Python's asyncio server
# (/usr/bin/python3, streams API) and a plain callback-style Asio server, all driven by the same
# C++ client, in two workloads: ping-pong (one line in flight per connection, 4000 each) and
# pipelined (16 lines in flight per connection, 20000 each). Alternating runs, medians; prints
# Markdown tables.
#   bash bench/run_aio.sh [repetitions]     (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
reps="${1:-5}"
conns=50
workloads=("1 4000" "16 20000")  # depth, lines per connection
bash tools/install-deps.sh
cmake --preset bench >/dev/null
cmake --build --preset bench --target bench_aio_echo >/dev/null
bin=./build/bench/bench/bench_aio_echo
out=build/bench/aio_results.txt
: >"$out"
# A fresh range each run (no clash with a lingering socket), below Linux's ephemeral ports (32768
# and up), which the clients' own connections take.
port=$((20000 + RANDOM % 10000))
cpu_ticks() {  # user + system CPU time of a process, in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}
run_one() {  # name, depth, lines per connection, server command...
  local name=$1 depth=$2 msgs=$3
  shift 3
  local pid
  for _ in 1 2 3 4 5; do  # a port somebody else holds: the next one
    "$@" "$port" >/tmp/parx-echo-server.log 2>&1 &
    pid=$!
    for _ in $(seq 200); do  # until the server accepts connections (up to 10 s)
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    kill -0 "$pid" 2>/dev/null && break
    port=$((port + 1))
  done
  local t0 t1
  t0=$(cpu_ticks "$pid")
  if result=$("$bin" client "$port" "$conns" "$msgs" "$depth"); then
    t1=$(cpu_ticks "$pid")
    echo "$name $result server_cpu_ticks $((t1 - t0))" >>"$out"
  else
    echo "run_aio.sh: the client failed against the $name server (port $port)" >&2
  fi
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  port=$((port + 1))
}
for ((r = 1; r <= reps; r++)); do
  for w in "${workloads[@]}"; do
    read -r depth msgs <<<"$w"
    run_one parx "$depth" "$msgs" "$bin" server-parx
    run_one python "$depth" "$msgs" /usr/bin/python3 bench/py_echo.py
    run_one asio "$depth" "$msgs" "$bin" server-asio
  done
done
/usr/bin/python3 - "$out" "$conns" <<'PY'
import os, statistics, sys
rates, cpu, lines = {}, {}, {}
hz = os.sysconf("SC_CLK_TCK")
for line in open(sys.argv[1]):
    parts = line.split()
    depth = int(parts[parts.index("depth") + 1])
    key = (depth, parts[0])
    rates.setdefault(key, []).append(float(parts[parts.index("msgs_per_s") + 1]))
    msgs = float(parts[parts.index("msgs") + 1])
    lines[depth] = msgs / int(sys.argv[2])
    ticks = float(parts[parts.index("server_cpu_ticks") + 1])
    cpu.setdefault(key, []).append(ticks / hz / msgs * 1e6)
m = {k: statistics.median(v) for k, v in rates.items()}
c = {k: statistics.median(v) for k, v in cpu.items()}
print(f"medians of {min(len(v) for v in rates.values())} alternating runs; {sys.argv[2]} connections; 64-byte lines; "
      f"one client thread; servers single-threaded; {os.cpu_count()} cores; no pinning\n")
for depth in sorted(lines):
    kind = "ping-pong: one line in flight per connection" if depth == 1 else f"pipelined: {depth} lines in flight per connection"
    print(f"**{kind}**, {lines[depth]:.0f} lines per connection\n")
    print("| server | lines echoed/s | parx / server (throughput) | server CPU per line | server / parx (CPU per line) |")
    print("|---|---|---|---|---|")
    for k, label in (("parx", "parx::aio (read_line / queue)"), ("python", "Python asyncio streams"), ("asio", "plain Asio callbacks")):
        p, q = m[(depth, "parx")], m[(depth, k)]
        print(f"| {label} | {q:,.0f} | {p / q:.2f} | {c[(depth, k)]:.2f} µs | {c[(depth, k)] / c[(depth, 'parx')]:.2f} |")
    print()
PY

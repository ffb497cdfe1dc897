#!/usr/bin/env bash
# TCP echo on 127.0.0.1, 50 connections: parx::aio's server against Python's asyncio server
# (/usr/bin/python3, streams API) and a plain callback-style Asio server, all driven by the same
# C++ client; alternating runs, medians; prints a Markdown table.
#   bash bench/run_aio.sh [repetitions] [messages per connection]     (defaults 5, 4000)
set -euo pipefail
cd "$(dirname "$0")/.."
reps="${1:-5}"
msgs="${2:-4000}"
conns=50
bash tools/install-deps.sh
cmake --preset bench >/dev/null
cmake --build --preset bench --target bench_aio_echo >/dev/null
bin=./build/bench/bench/bench_aio_echo
out=build/bench/aio_results.txt
: >"$out"
port=$((20000 + RANDOM % 30000))  # a fresh range each run: no clash with a lingering socket
cpu_ticks() {  # user + system CPU time of a process, in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}
run_one() {  # name, server command...
  local name=$1
  shift
  "$@" >/tmp/parx-echo-server.log 2>&1 &
  local pid=$!
  for _ in $(seq 200); do  # until the server accepts connections (up to 10 s)
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.05
  done
  local t0 t1
  t0=$(cpu_ticks "$pid")
  if result=$("$bin" client "$port" "$conns" "$msgs"); then
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
  run_one parx "$bin" server-parx "$port"
  run_one python /usr/bin/python3 bench/py_echo.py "$port"
  run_one asio "$bin" server-asio "$port"
done
/usr/bin/python3 - "$out" "$conns" "$msgs" <<'PY'
import os, statistics, sys
rates, cpu = {}, {}
hz = os.sysconf("SC_CLK_TCK")
for line in open(sys.argv[1]):
    parts = line.split()
    rates.setdefault(parts[0], []).append(float(parts[parts.index("msgs_per_s") + 1]))
    msgs = float(parts[parts.index("msgs") + 1])
    ticks = float(parts[parts.index("server_cpu_ticks") + 1])
    cpu.setdefault(parts[0], []).append(ticks / hz / msgs * 1e6)
m = {k: statistics.median(v) for k, v in rates.items()}
c = {k: statistics.median(v) for k, v in cpu.items()}
print(f"medians of {min(len(v) for v in rates.values())} alternating runs; {sys.argv[2]} connections x {sys.argv[3]} round trips of 64-byte lines; "
      f"one client thread; servers single-threaded; {os.cpu_count()} cores; no pinning\n")
print("| server | round trips/s | parx / server (throughput) | server CPU per round trip | server / parx (CPU per round trip) |")
print("|---|---|---|---|---|")
for k, label in (("parx", "parx::aio (read_line / write)"), ("python", "Python asyncio streams"), ("asio", "plain Asio callbacks")):
    print(f"| {label} | {m[k]:,.0f} | {m['parx'] / m[k]:.2f} | {c[k]:.2f} µs | {c[k] / c['parx']:.2f} |")
PY

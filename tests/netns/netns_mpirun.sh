#!/usr/bin/env bash
# Run an Open MPI job across 2 or 3 "hosts" made of Linux network namespaces, so the job's
# traffic really crosses TCP between machines (and gethostname() differs per host).
#
#   netns_mpirun.sh [-k HOSTS] -n NP -- program args...
#
# Namespaces parx<pid>h1..h<HOSTS> each get one veth (eth0, 10.213.X.<n>/24) plugged into a
# bridge in a switch namespace parx<pid>sw; nothing is added to the caller's namespace.
# mpirun runs in h1 and starts orted on the others through netns_rsh.sh (as if by ssh).
# Environment: PARX_NETNS_EXPORT="VAR1 VAR2"  variables forwarded to all ranks (mpirun -x)
#              PARX_NETNS_TIMEOUT=SECONDS     mpirun --timeout (the job is killed after it)
#              PARX_NETNS_MPIRUN_ARGS="..."   extra mpirun arguments (split on spaces)
#              PARX_NETNS_VERBOSE=1           print the network set-up and the mpirun line
#              PARX_NETNS_RATE=1gbit          limit each host's outgoing rate (tc tbf)
# Exit status: mpirun's; 77 (CTest skip) when namespaces cannot be made; 2 on bad usage.
# shellcheck disable=SC2016,SC2317  # sh -c scripts in single quotes; cleanup runs from a trap
set -u
PATH=$PATH:/usr/sbin:/sbin

usage() {
  echo "usage: $0 [-k HOSTS] -n NP -- program args...   (HOSTS: 2 or 3, default 2)" >&2
  exit 2
}
skip() {
  echo "netns_mpirun.sh: SKIP: $*" >&2
  exit 77
}
say() { [[ ${PARX_NETNS_VERBOSE:-0} == 1 ]] && echo "netns_mpirun.sh: $*" >&2; return 0; }

k=2 np=
while (($#)); do
  case $1 in
    -k) k=${2:-}; shift 2 || usage ;;
    -n|-np) np=${2:-}; shift 2 || usage ;;
    --) shift; break ;;
    *) usage ;;
  esac
done
[[ $k == 2 || $k == 3 ]] || usage
[[ $np =~ ^[1-9][0-9]*$ ]] || usage
(($#)) || usage

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
agent=$here/netns_rsh.sh
[[ $agent != *[[:space:]]* ]] || skip "Open MPI splits the agent path on spaces: $agent"
[[ -x $agent ]] || skip "$agent is not executable"
for tool in ip unshare hostname mpirun; do
  command -v "$tool" >/dev/null || skip "$tool not found"
done
[[ $(id -u) == 0 ]] || skip "needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) for network namespaces"

id=$$
pre=parx$id
sw=${pre}sw
hosts=()
for ((i = 1; i <= k; i++)); do hosts+=("${pre}h$i"); done
net=10.213.$((id % 200 + 20))
subnet=$net.0/24
tmp=
mpirun_pid=

# Remove everything of run $1 (a pid): namespaces (their veths and the bridge go with them),
# /etc/netns entries. Processes still inside a namespace are killed first.
remove_run() {
  local p=$1 ns
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^parx$p(h[1-9]|sw)\$"); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
    ip netns del "$ns" 2>/dev/null
  done
  rm -rf /etc/netns/parx"$p"h[1-9] /etc/netns/parx"$p"sw
  rmdir /etc/netns 2>/dev/null
  rm -rf /tmp/parx-netns."$p".*
}

cleanup() {
  trap - EXIT INT TERM HUP
  if [[ -n $mpirun_pid ]] && kill -0 "$mpirun_pid" 2>/dev/null; then
    kill -TERM "$mpirun_pid" 2>/dev/null
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$mpirun_pid" 2>/dev/null || break; sleep 0.3; done
    kill -KILL "$mpirun_pid" 2>/dev/null
    wait "$mpirun_pid" 2>/dev/null
  fi
  if [[ ${PARX_NETNS_VERBOSE:-0} == 1 ]]; then
    for h in "${hosts[@]}"; do
      [[ -e /run/netns/$h ]] || continue
      read -r rx tx < <(ip netns exec "$h" cat /sys/class/net/eth0/statistics/{rx,tx}_bytes 2>/dev/null | tr '\n' ' ')
      say "$h eth0: received ${rx:-?} bytes, sent ${tx:-?} bytes"
    done
  fi
  remove_run "$id"
}

# Leftovers of runs killed with SIGKILL (a CTest timeout does that): their pid is gone.
# shellcheck disable=SC2012
for p in $({ ip netns list 2>/dev/null | awk '{print $1}'; ls /etc/netns 2>/dev/null
             ls -d /tmp/parx-netns.* 2>/dev/null | sed -E 's/^.*parx-netns\.([0-9]+)\..*$/parx\1sw/'; } |
           sed -nE 's/^parx([0-9]+)(h[1-9]|sw)$/\1/p' | sort -u); do
  if ! grep -qs netns_mpirun /proc/"$p"/cmdline; then
    say "removing leftovers of run $p"
    remove_run "$p"
  fi
done

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

ip netns add "$sw" 2>/dev/null || skip "cannot create network namespaces (ip netns add failed)"
fail() { echo "netns_mpirun.sh: set-up failed: $*" >&2; exit 1; }
ip -n "$sw" link set lo up || fail "lo in $sw"
ip -n "$sw" link add br0 type bridge || fail "bridge"
ip -n "$sw" link set br0 up || fail "bridge up"
hostsfile=$(printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n'
            for ((i = 1; i <= k; i++)); do printf '%s.%d\t%s\n' "$net" "$i" "${hosts[i - 1]}"; done)
for ((i = 1; i <= k; i++)); do
  h=${hosts[i - 1]}
  ip netns add "$h" || fail "ip netns add $h"
  # IPv4 only: otherwise the TCP btl also offers eth0's link-local IPv6 address.
  ip netns exec "$h" sh -c 'for f in all default; do echo 1 >/proc/sys/net/ipv6/conf/$f/disable_ipv6; done' 2>/dev/null
  ip link add eth0 netns "$h" type veth peer name p$i netns "$sw" || fail "veth for $h"
  ip -n "$sw" link set p$i master br0 up || fail "bridge port for $h"
  ip -n "$h" link set lo up || fail "lo in $h"
  ip -n "$h" addr add "$net.$i/24" dev eth0 || fail "address of $h"
  ip -n "$h" link set eth0 up || fail "eth0 up in $h"
  # PARX_NETNS_RATE=1gbit: shape each host's outgoing traffic like a real network link.
  if [[ -n ${PARX_NETNS_RATE:-} ]]; then
    ip netns exec "$h" tc qdisc add dev eth0 root tbf rate "$PARX_NETNS_RATE" burst 1mb latency 100ms ||
      fail "tc rate $PARX_NETNS_RATE on $h"
  fi
  { mkdir -p /etc/netns/"$h" && printf '%s\n' "$hostsfile" >/etc/netns/"$h"/hosts; } || fail "/etc/netns/$h/hosts"
done
tmp=$(mktemp -d /tmp/parx-netns.$id.XXXXXX) || fail "mktemp"
export PARX_NETNS_TMP=$tmp
say "hosts ${hosts[*]} on $subnet, switch $sw, session dirs under $tmp"

# Wait until every link is up and every bridge port forwards (both come up asynchronously).
for ((i = 1; i <= k; i++)); do
  ok=
  for _ in $(seq 50); do
    if ip -n "${hosts[i - 1]}" link show eth0 | grep -q 'state UP' &&
       bridge -n "$sw" link show dev p$i | grep -q 'state forwarding'; then ok=1; break; fi
    sleep 0.1
  done
  [[ -n $ok ]] || fail "the link of ${hosts[i - 1]} did not come up"
done

slots=$(((np + k - 1) / k))
hostlist=
for h in "${hosts[@]}"; do hostlist+=${hostlist:+,}$h:$slots; done
# shellcheck disable=SC2054  # tcp,self is one word
args=(-n "$np" --host "$hostlist" --map-by node --oversubscribe
      --mca plm_rsh_agent "$agent" --mca plm_rsh_no_tree_spawn 1
      --mca btl tcp,self --mca btl_tcp_if_include "$subnet"
      --mca oob_tcp_if_include "$subnet")
[[ $(id -u) == 0 ]] && args+=(--allow-run-as-root)
[[ -n ${PARX_NETNS_TIMEOUT:-} ]] && args+=(--timeout "$PARX_NETNS_TIMEOUT")
for v in ${PARX_NETNS_EXPORT:-}; do args+=(-x "$v"); done
# shellcheck disable=SC2206
[[ -n ${PARX_NETNS_MPIRUN_ARGS:-} ]] && args+=(${PARX_NETNS_MPIRUN_ARGS})
mkdir -p "$tmp/${hosts[0]}"
say "mpirun ${args[*]} $*"

# mpirun in h1, under host name h1; in the background so a signal reaches our trap at once.
ip netns exec "${hosts[0]}" unshare --uts -- \
  env TMPDIR="$tmp/${hosts[0]}" \
  sh -c 'hostname "$1" || exit 1; shift; exec mpirun "$@"' netns_mpirun "${hosts[0]}" "${args[@]}" "$@" &
mpirun_pid=$!
wait "$mpirun_pid"
rc=$?
mpirun_pid=
exit "$rc"

#!/usr/bin/env bash
# Open MPI launch agent (--mca plm_rsh_agent) for netns_mpirun.sh: stands in for ssh.
# Called as `netns_rsh.sh [ssh options...] HOST command...`; runs the command in network
# namespace HOST (ip netns exec, which also bind-mounts /etc/netns/HOST/hosts over /etc/hosts),
# in a fresh UTS namespace whose host name is HOST, so gethostname() there says HOST.
# Like sshd it starts the command from a clean environment (PATH, HOME, USER, LANG and a per-host
# TMPDIR); anything else the ranks need comes from mpirun's -x.
# shellcheck disable=SC2016  # the sh -c script is meant for the inner shell
set -u

# Drop ssh-style options; those listed take an argument.
while (($#)); do
  case $1 in
    --) shift; break ;;
    -[bcDEeFIiJLlmOoPpQRSWw]) shift 2 ;;
    -[bcDEeFIiJLlmOoPpQRSWw]?*) shift ;;  # -oFoo=bar, -lroot
    -*) shift ;;
    *) break ;;
  esac
done
if (($# < 2)); then
  echo "netns_rsh.sh: usage: netns_rsh.sh [ssh options] HOST command..." >&2
  exit 255
fi
host=$1; shift
# Only the namespaces netns_mpirun.sh made (parx<pid>h<n>), and only existing ones.
if [[ ! $host =~ ^parx[0-9]+h[1-9]$ ]] || [[ ! -e /run/netns/$host ]]; then
  echo "netns_rsh.sh: $host is not a netns_mpirun.sh host" >&2
  exit 255
fi
tmp=${PARX_NETNS_TMP:-/tmp}/$host
mkdir -p "$tmp"
# ssh joins the remote words with spaces and gives them to the remote shell: do the same.
exec ip netns exec "$host" unshare --uts -- \
  env -i PATH="${PATH:-/usr/local/bin:/usr/bin:/bin}" HOME="${HOME:-/root}" \
         USER="$(id -un)" LOGNAME="$(id -un)" LANG="${LANG:-C.UTF-8}" TMPDIR="$tmp" \
  sh -c 'hostname "$1" || exit 255; exec sh -c "$2"' netns_rsh "$host" "$*"

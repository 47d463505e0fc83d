# Tears down a real test node: $1 = node dir, $2 = cgroup root name, $3 = bridge.
# Runs after the kubelet and containerd were signalled. Order matters: container
# processes first (they hold mounts and network namespaces), then containerd's shims,
# then every mount under the node dir, the cgroups, the bridge, and last the directory.
dir=$1
cg=$2
br=$3
case "$dir" in /*/rlaunch-node*) ;; *) echo "refusing to tear down $dir" >&2; exit 1 ;; esac
procs() {
  for ctl in /sys/fs/cgroup/*/"$cg"; do
    [ -d "$ctl" ] && find "$ctl" -name cgroup.procs -exec cat {} + 2>/dev/null
  done
}
for round in 1 2 3 4 5; do
  pids=$(procs | sort -u)
  [ -z "$pids" ] && break
  for pid in $pids; do kill -s KILL "$pid" 2>/dev/null; done
  sleep 0.2
done
# The shims (and the kubelet/containerd if still alive) name the node dir in their argv.
for p in /proc/[0-9]*; do
  pid=${p#/proc/}
  [ "$pid" = "$$" ] && continue
  if tr '\0' ' ' < "$p/cmdline" 2>/dev/null | grep -q -F -- "$dir/"; then
    kill -s KILL "$pid" 2>/dev/null
  fi
done
sleep 0.2
for round in 1 2 3; do
  mounts=$(grep -F " $dir/" /proc/self/mounts | cut -d' ' -f2 | sort -r)
  [ -z "$mounts" ] && break
  for m in $mounts; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
done
for round in 1 2 3 4 5; do
  left=0
  for ctl in /sys/fs/cgroup/*/"$cg"; do
    [ -d "$ctl" ] || continue
    find "$ctl" -depth -type d -exec rmdir {} \; 2>/dev/null
    [ -d "$ctl" ] && left=1
  done
  [ "$left" = 0 ] && break
  sleep 0.2
done
ip link delete "$br" 2>/dev/null
rm -rf --one-file-system -- "$dir"

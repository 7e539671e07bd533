#!/usr/bin/env bash
# Live soak: imscan -i on one end of a veth pair in a network namespace,
# tcpreplay looping mixed IM fixtures at top speed on the other end, for
# SECONDS (default 600). Prints imscan's peak RSS after 1 minute and at the
# end, and its final drop counters. Needs root, iproute2, tcpreplay and a
# release build with the live feature:
#   cargo build --release --features live && tests/soak/live-soak.sh 600
set -euo pipefail
secs=${1:-600}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin="$root/target/release/imscan"
[ -x "$bin" ] || { echo "build first: cargo build --release --features live" >&2; exit 2; }
ns="imscan-soak-$$"
out=$(mktemp -d)
cleanup() {
  [ -n "${imscan_pid:-}" ] && kill -TERM "$imscan_pid" 2>/dev/null || true
  [ -n "${replay_pid:-}" ] && kill "$replay_pid" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$ns"
ip netns exec "$ns" ip link add va type veth peer name vb
ip netns exec "$ns" ip link set va up
ip netns exec "$ns" ip link set vb up
mkdir -p "$out/tree"
ip netns exec "$ns" "$bin" -i va -o "$out/tree" --status-interval 30 --stats 2>"$out/stderr" &
imscan_pid=$!
sleep 2
fixtures=("$root"/fixtures/real/irc-ngircd-dave-erin-frank.pcap "$root"/fixtures/real/xmpp-prosody-dave-erin-frank.pcap "$root"/fixtures/gadugadu/gg8-session-8074.pcap "$root"/fixtures/msn/switchboard.pcap "$root"/fixtures/oscar/icq-login-bos-5190.pcap)
ip netns exec "$ns" tcpreplay --topspeed --loop=0 -q -i vb "${fixtures[@]}" >/dev/null 2>&1 &
replay_pid=$!
rss() { awk '/VmHWM/ {print $2" kB"}' "/proc/$imscan_pid/status"; }
sleep 60
echo "peak RSS after 1 min: $(rss)"
sleep $((secs > 60 ? secs - 60 : 0))
echo "peak RSS after $secs s: $(rss)"
kill "$replay_pid"; wait "$replay_pid" 2>/dev/null || true; replay_pid=
kill -TERM "$imscan_pid"; wait "$imscan_pid" || echo "imscan exit $?"; imscan_pid=
grep -E '"(received|processed|dropped|kernel_dropped|events)"|peak_rss' "$out/stderr" | head -20
tail -n 3 "$out/stderr" | grep -v '^ ' || true
rm -rf "$out"

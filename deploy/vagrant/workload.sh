#!/bin/bash
# Attaches one workload to this host, as `weft lab` and Calico do it: a
# network namespace "wl" joined to the host by a routed veth (host side
# "wlwl", proxy ARP on it, a /32 route to the workload), the workload with
# the second address of the host's subnet (10.244.N.2 for 10.244.N.0/24),
# default route via 169.254.1.1, and the MTU weft computed. It waits for the
# agent to write its subnet (run dir subnet.env). Safe to run again.
set -euo pipefail

env=/run/weft/subnet.env
for _ in $(seq 1 120); do
	[ -s "$env" ] && break
	sleep 1
done
if [ ! -s "$env" ]; then
	echo "workload: $env not written after 120 s: is the agent running? (journalctl -u weft)" >&2
	exit 1
fi
# FLANNEL_SUBNET is the subnet written with its first address: 10.244.3.1/24.
# shellcheck disable=SC1090
. "$env"
gw=${FLANNEL_SUBNET%/*}
addr=${gw%.*}.$((${gw##*.} + 1))

if ! ip netns list | grep -qx 'wl\( .*\)\?'; then
	ip netns add wl
fi
ip -n wl link set lo up
if ! ip link show wlwl >/dev/null 2>&1; then
	ip link add wlwl type veth peer name eth0 netns wl
fi
ip -n wl addr flush dev eth0
ip -n wl addr add "$addr/32" dev eth0
ip -n wl link set eth0 mtu "$FLANNEL_MTU" up
ip -n wl route replace 169.254.1.1 dev eth0 scope link
ip -n wl route replace default via 169.254.1.1 dev eth0
echo 1 >/proc/sys/net/ipv4/conf/wlwl/proxy_arp
ip link set wlwl up
ip route replace "$addr/32" dev wlwl scope link
echo "workload wl: $addr (mtu $FLANNEL_MTU); try: ip netns exec wl ping <another host's workload>"

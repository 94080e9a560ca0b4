#!/bin/bash
# Provisions one VM of weft's Vagrant lab (see the Vagrantfile): packages,
# the kernel's ipip and wireguard modules, routes to the rest of the lab,
# Go, weft built from /vagrant, /etc/weft/weft.yaml and the cluster key, the
# systemd unit, and one workload. Safe to run again (`vagrant provision`):
# it rebuilds weft and restarts the agent, which keeps the data plane.
#
# Input, from the Vagrantfile: LAB_NODE, LAB_ADDR (the address the agent
# advertises), LAB_GATEWAY (the router on this VM's network; empty on the
# router), LAB_LAB_CIDR, LAB_REGION, LAB_ZONE, LAB_JOIN (comma-separated),
# LAB_OVERLAY, LAB_OVERLAY_MODE, LAB_ENCRYPTION, LAB_GO_VERSION,
# LAB_CLUSTER_KEY (base64).
set -euo pipefail

: "${LAB_NODE:?}" "${LAB_ADDR:?}" "${LAB_LAB_CIDR:?}" "${LAB_GO_VERSION:?}"
if [ -z "${LAB_CLUSTER_KEY:-}" ]; then
	echo "provision: no cluster key (LAB_CLUSTER_KEY); run vagrant up or vagrant provision" >&2
	exit 1
fi
log() { echo "provision $LAB_NODE: $*"; }

log "packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq ca-certificates curl iproute2 iputils-ping tcpdump nftables iperf3 ethtool >/dev/null
# Without recommends: wireguard-tools would pull a kernel image.
apt-get install -y -qq --no-install-recommends wireguard-tools >/dev/null

log "kernel modules: wireguard, ipip"
modprobe wireguard
modprobe ipip
printf 'wireguard\nipip\n' >/etc/modules-load.d/weft.conf

# The interface that holds LAB_ADDR carries weft's traffic (eth0 is
# Vagrant's NAT, with the default route).
underlay=$(ip -o -4 addr show | awk -v a="$LAB_ADDR" '{split($4, p, "/"); if (p[1] == a) print $2}')
if [ -z "$underlay" ]; then
	echo "provision: no interface has $LAB_ADDR" >&2
	exit 1
fi
log "underlay $underlay ($LAB_ADDR)"

if [ -z "${LAB_GATEWAY:-}" ]; then
	log "router: forwarding between the lab networks"
	echo 'net.ipv4.ip_forward = 1' >/etc/sysctl.d/60-weft-lab.conf
	sysctl -q -p /etc/sysctl.d/60-weft-lab.conf
else
	log "route $LAB_LAB_CIDR via $LAB_GATEWAY"
	cat >/etc/systemd/system/weft-lab-route.service <<UNIT
[Unit]
Description=weft lab: route to the other lab networks through the router
After=network-online.target
Wants=network-online.target
Before=weft.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/sbin/ip route replace $LAB_LAB_CIDR via $LAB_GATEWAY dev $underlay

[Install]
WantedBy=multi-user.target
UNIT
	systemctl daemon-reload
	systemctl enable --now weft-lab-route.service
	systemctl restart weft-lab-route.service
fi

arch=$(dpkg --print-architecture)
if [ "$(/usr/local/go/bin/go env GOVERSION 2>/dev/null || true)" != "go$LAB_GO_VERSION" ]; then
	log "go $LAB_GO_VERSION ($arch)"
	tarball="go$LAB_GO_VERSION.linux-$arch.tar.gz"
	tmp=$(mktemp -d)
	curl -fsSL -o "$tmp/$tarball" "https://dl.google.com/go/$tarball"
	want=$(curl -fsSL "https://dl.google.com/go/$tarball.sha256")
	echo "$want  $tmp/$tarball" | sha256sum -c --quiet -
	rm -rf /usr/local/go
	tar -C /usr/local -xzf "$tmp/$tarball"
	rm -rf "$tmp"
fi

log "build weft from /vagrant"
(cd /vagrant && HOME=/root GOFLAGS=-buildvcs=false /usr/local/go/bin/go build -o /usr/local/bin/weft.new ./cmd/weft)
mv /usr/local/bin/weft.new /usr/local/bin/weft

log "config"
install -d -m 0755 /etc/weft
join=""
IFS=, read -ra seeds <<<"${LAB_JOIN:-}"
for s in "${seeds[@]}"; do join="$join\"$s\", "; done
cat >/etc/weft/weft.yaml <<CONFIG
# Written by deploy/vagrant/provision.sh; \`vagrant provision\` rewrites it.
nodeName: $LAB_NODE
clusterName: vagrant
join: [${join%, }]
underlayInterface: $underlay
advertiseAddress: $LAB_ADDR
location:
  cloud: vagrant
  region: "$LAB_REGION"
  zone: "$LAB_ZONE"
overlay: ${LAB_OVERLAY:-ipip}
overlayMode: ${LAB_OVERLAY_MODE:-cross-subnet}
encryption: ${LAB_ENCRYPTION:-cross-region}
CONFIG
(umask 077 && echo "$LAB_CLUSTER_KEY" >/etc/weft/cluster.key.new)
mv /etc/weft/cluster.key.new /etc/weft/cluster.key

log "systemd unit"
install -m 0644 /vagrant/deploy/weft.service /etc/systemd/system/weft.service
systemctl daemon-reload
systemctl enable weft.service
# A restart keeps the data plane (KillMode=process): the new agent adopts it.
systemctl restart weft.service

log "workload"
/vagrant/deploy/vagrant/workload.sh
log "done: vagrant ssh $LAB_NODE -c 'sudo weft status'"

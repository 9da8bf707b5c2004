#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages the lab needs (`make demo`, `make test`)
# that are missing, and says which. As root it runs apt-get itself, so a fresh
# machine without sudo works; otherwise it uses sudo when there is one.
set -euo pipefail

# The lab: real sshd, containerd and runc per host; sudo users; namespaces
# and mounts (test/lab/preflight.go checks for the same). make, git and
# ca-certificates are for building.
packages=(make git ca-certificates openssh-server openssh-client openssh-sftp-server
	containerd runc sudo iproute2 util-linux passwd)

if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
	echo "install-lab-packages: not a Debian or Ubuntu machine (no dpkg-query/apt-get): install the equivalents of ${packages[*]} yourself" >&2
	exit 0
fi

missing=()
for p in "${packages[@]}"; do
	if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -eq 0 ]; then
	echo "install-lab-packages: the lab's packages are installed"
	exit 0
fi

if [ "$(id -u)" = 0 ]; then
	as_root=()
elif command -v sudo >/dev/null; then
	as_root=(sudo)
else
	echo "install-lab-packages: missing ${missing[*]}; run this script as root (sudo is not installed)" >&2
	exit 1
fi

echo "install-lab-packages: installing ${missing[*]} (apt-get)"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-lab-packages: installed ${missing[*]}"

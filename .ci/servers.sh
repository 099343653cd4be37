#!/usr/bin/env bash
# Debian packages for the catalog / PACS / de-identification tests: a real PostgreSQL and a real
# Orthanc (with DICOMweb) that the tests start themselves on 127.0.0.1 (Orthanc inside its own
# network namespace: unshare from util-linux, ip from iproute2). Nothing is started here: the
# packages' own services stay down (policy-rc.d), the tests run private instances.
set -euo pipefail

PACKAGES="postgresql orthanc orthanc-dicomweb iproute2 util-linux"
missing=""
for pkg in $PACKAGES; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi

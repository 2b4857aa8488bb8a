#!/bin/bash
# Builds target/deb/ringmq_<version>_<arch>.deb from the release binaries
# (`make deb` builds them first). Uses only dpkg-deb, which every Debian
# system has; the layout and the maintainer scripts are in packaging/deb/
# (docs/install.md).
#
#   scripts/build-deb.sh            prints the path of the .deb it wrote
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
ARCH=$(dpkg --print-architecture)
BIN=${RELEASE_DIR:-target/release}
for b in ringmq ringmq-loadgen; do
  [ -x "$BIN/$b" ] || { echo "build-deb: $BIN/$b missing: run make deb (it builds it)" >&2; exit 2; }
done
NAME=ringmq_${VERSION}_${ARCH}
STAGE=target/deb/$NAME
rm -rf "$STAGE"
install -d "$STAGE/DEBIAN" "$STAGE/usr/bin" "$STAGE/etc/ringmq" "$STAGE/lib/systemd/system" \
  "$STAGE/usr/share/doc/ringmq" "$STAGE/usr/share/ringmq/tuning"

# Binaries without their debug information (the release profile keeps it for
# profiling: 46 MB against a few MB stripped).
for b in ringmq ringmq-loadgen; do
  strip --strip-debug -o "$STAGE/usr/bin/$b" "$BIN/$b"
  chmod 0755 "$STAGE/usr/bin/$b"
done

# The configuration: the example file (every key at its default, each one
# documented) with the data directory the unit grants write access to.
sed 's|^data_dir = "data"$|data_dir = "/var/lib/ringmq"|' ringmq.example.toml > "$STAGE/etc/ringmq/ringmq.toml"
grep -q '^data_dir = "/var/lib/ringmq"$' "$STAGE/etc/ringmq/ringmq.toml" \
  || { echo "build-deb: ringmq.example.toml has no 'data_dir = \"data\"' line to rewrite" >&2; exit 2; }
chmod 0640 "$STAGE/etc/ringmq/ringmq.toml"

install -m 0644 packaging/deb/ringmq.service "$STAGE/lib/systemd/system/ringmq.service"

DOC=$STAGE/usr/share/doc/ringmq
for f in README.md docs/install.md docs/tuning.md docs/configuration.md docs/security.md \
         docs/authorization.md docs/clustering.md docs/admin-api.md ringmq.example.toml; do
  [ -f "$f" ] && install -m 0644 "$f" "$DOC/$(basename "$f")"
done
cat > "$DOC/copyright" <<COPY
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ringmq
Source: the ringmq repository

Files: *
Copyright: the ringmq developers
License: see the repository's license terms
COPY
printf 'ringmq (%s) unstable; urgency=medium\n\n  * Package built from the ringmq tree (git %s).\n\n -- ringmq developers <ringmq@localhost>  %s\n' \
  "$VERSION" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$(date -R)" \
  | gzip -9n > "$DOC/changelog.gz"

for f in apply check ringmq_tuning.py sysctl.conf limits.conf measure/mqtt_load.py measure/run.sh; do
  install -D -m "$([ -x "tuning/$f" ] && echo 0755 || echo 0644)" "tuning/$f" "$STAGE/usr/share/ringmq/tuning/$f"
done

# glibc: the highest symbol version the binaries need.
GLIBC=$(objdump -T "$STAGE/usr/bin/ringmq" "$STAGE/usr/bin/ringmq-loadgen" \
  | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -t. -k1,1n -k2,2n | tail -1)
SIZE_KB=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
cat > "$STAGE/DEBIAN/control" <<CTRL
Package: ringmq
Version: $VERSION
Architecture: $ARCH
Maintainer: ringmq developers <ringmq@localhost>
Installed-Size: $SIZE_KB
Depends: libc6 (>= $GLIBC), adduser, init-system-helpers (>= 1.52)
Section: net
Priority: optional
Description: MQTT 3.1.1/5.0 broker, thread-per-core on io_uring
 ringmq is an MQTT broker for bare-metal Linux: one shard per CPU on
 io_uring, TLS and WebSocket listeners, an admin HTTP API with Prometheus
 metrics, and clustering over QUIC. This package installs the broker, its
 load generator, a systemd unit and the kernel tuning scripts.
CTRL
echo /etc/ringmq/ringmq.toml > "$STAGE/DEBIAN/conffiles"
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$STAGE/DEBIAN/"
(cd "$STAGE" && find . -type f ! -path './DEBIAN/*' -printf '%P\n' | sort | xargs md5sum > DEBIAN/md5sums)

dpkg-deb --root-owner-group -Zxz --build "$STAGE" "target/deb/$NAME.deb" >/dev/null
echo "target/deb/$NAME.deb"

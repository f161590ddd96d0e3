#!/usr/bin/env bash
# Installs the versitygw S3 server used by the e2e tests into a cache directory,
# only when it is not there yet, and prints the path of the binary.
#
#   TAPEFS_TOOLS   tools cache (default: $HOME/.cache/tapefs-tools); the binary is $TAPEFS_TOOLS/bin/versitygw
#   VERSITYGW_VERSION  (default: v1.8.0)
set -euo pipefail

version="${VERSITYGW_VERSION:-v1.8.0}"
tools="${TAPEFS_TOOLS:-$HOME/.cache/tapefs-tools}"
bindir="$tools/bin"
bin="$bindir/versitygw"
stamp="$bindir/.versitygw-version"

if [[ -x "$bin" && -f "$stamp" && "$(cat "$stamp")" == "$version" ]]; then
	echo "$bin"
	exit 0
fi

mkdir -p "$bindir"
echo "installing versitygw $version into $bindir (takes a few minutes the first time)" >&2
# Build outside any module so the project's go.mod does not interfere.
(cd / && GOBIN="$bindir" GOFLAGS=-mod=mod go install "github.com/versity/versitygw/cmd/versitygw@$version") >&2
echo "$version" >"$stamp"
echo "$bin"

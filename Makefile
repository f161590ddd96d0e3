# tapefs — build, run and test.
#
#   make test    the one test command: installs what is missing, then gofmt, vet,
#                unit tests with -race (fuzz targets run their seed corpora there),
#                and the end-to-end suite (root and /dev/fuse)
#   make fuzz    every fuzz target for FUZZTIME runs (not part of make test)
#   make run     build and mount the embedded default store at $(MNT), in the foreground
#   make build   build bin/tapefs (the query front end) and bin/tapefs-full
#   make install install both into $(PREFIX)/bin

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

GO      ?= go
TAGS    := sqlite_fts5
BIN     := bin/tapefs
MNT     ?= /mnt/tapes
PREFIX  ?= /usr/local

# Debian packages the tests drive the mount with (and cgo needs for SQLite).
DEB_PACKAGES := jq sqlite3 attr psmisc gcc libc6-dev stress-ng fio rsync

# versitygw (the S3 server of the e2e suite) is built once into this cache.
export TAPEFS_TOOLS ?= $(HOME)/.cache/tapefs-tools

SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: all build install run test deps fmt-check vet unit fuzz e2e clean

all: build

# Two programs from one package: tapefs-full is the complete program;
# tapefs (-tags tapefs_lite) links only the sidecar, answers ls, search and
# show itself (no cloud SDK start-up), and execs tapefs-full for the rest.
build:
	$(GO) build -tags $(TAGS) -o bin/tapefs-full ./cmd/tapefs
	$(GO) build -tags "$(TAGS) tapefs_lite" -o $(BIN) ./cmd/tapefs

install: build
	install -d $(PREFIX)/bin
	install -m 0755 bin/tapefs bin/tapefs-full $(PREFIX)/bin/

run: build
	mkdir -p $(MNT)
	./$(BIN) mount $(MNT)

test: deps fmt-check vet unit e2e

deps:
	@missing=(); \
	for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$$p"); \
	done; \
	if (( $${#missing[@]} )); then \
		echo "installing $${missing[*]}"; \
		$(SUDO) apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends "$${missing[@]}"; \
	fi
	@scripts/install-versitygw.sh >/dev/null

fmt-check:
	@bad=$$(gofmt -l $$(find . -name '*.go' -not -path './vendor/*')); \
	if [[ -n "$$bad" ]]; then echo "gofmt would change:"; echo "$$bad"; exit 1; fi

vet:
	$(GO) vet -tags $(TAGS) ./...
	$(GO) vet -tags "$(TAGS) tapefs_lite" ./cmd/tapefs

unit:
	$(GO) test -race -tags $(TAGS) $$($(GO) list ./... | grep -v '/test/e2e')
	$(GO) test -race -tags "$(TAGS) tapefs_lite" ./cmd/tapefs

# Every fuzz target, each for a bounded number of runs (FUZZTIME); a longer
# run for a nightly job: make fuzz FUZZTIME=1000000x. Kept out of make test:
# each target is rebuilt with coverage instrumentation, which took about
# 4 minutes of a cold-cache CI run, while the seed corpora already run as
# ordinary tests in make unit. A count, not a
# duration: with a duration, Go's fuzz coordinator can fail a target with a
# bare "context deadline exceeded" (no failing input) when the time runs out
# while a worker is busy, which made CI flaky (golang/go#51484).
FUZZTIME ?= 5000x
fuzz:
	@for pkg in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for fn in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$pkg/*_test.go | sed 's/^func //'); do \
			echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
			$(GO) test -tags $(TAGS) -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg >/tmp/tapefs-fuzz.log 2>&1 || { cat /tmp/tapefs-fuzz.log; exit 1; }; \
		done; \
	done

e2e:
	$(GO) test -tags $(TAGS) -count=1 -timeout 20m ./test/e2e/...

clean:
	rm -rf bin

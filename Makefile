# Herald: the two commands of the README, and a few helpers.
export PATH := $(PATH):/usr/local/go/bin
GO ?= go

.PHONY: demo test build vet fmt bench clean console

## demo: run a real campaign end to end on a local stack (installs what is missing)
demo:
	./deploy/local-stack.sh install
	$(GO) run ./cmd/herald demo

## test: the whole test suite against real redis-server, clickhouse-server and kfake
test:
	./deploy/local-stack.sh install
	./deploy/local-stack.sh install-browser
	$(GO) vet ./...
	$(GO) test -race -timeout 30m ./...

## console: rebuild the web console's bundle (console/dist, embedded in the binary) from console/web's lock
console:
	cd console/web && npm ci --no-audit --no-fund --ignore-scripts && node build.mjs

build:
	$(GO) build -o bin/herald ./cmd/herald

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf .herald bin

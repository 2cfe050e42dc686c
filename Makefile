# make test: everything CI runs. It installs and starts the services the backend matrix needs
# (scripts/test-services.sh), then vets, checks formatting and runs the race-enabled test suite.
GO ?= go
PKGS ?= ./...

.PHONY: test vet fmt-check unit services bench

test: services vet fmt-check unit

services:
	@if [ -x scripts/test-services.sh ]; then scripts/test-services.sh; fi

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

unit:
	$(GO) test -race -count=1 -timeout 12m $(PKGS)

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

# make test: everything CI runs. It installs and starts the services the backend matrix needs
# (scripts/test-services.sh), vets, checks formatting, runs the whole suite under the race
# detector, then runs the broker-backed packages once more without it: rocketmq-client-go v2.1.2
# has data races inside its push consumer, so tests that drive it skip under -race and run here.
# Slow tests that need no second run skip when ROCKETBUS_SECOND_PASS is set.
GO ?= go
PKGS ?= ./...
BROKER_PKGS = $(shell $(GO) list ./rocketmq/... ./middleware/... ./testkit/... ./kratosbus/... ./examples/... 2>/dev/null)

.PHONY: test vet fmt-check unit broker services bench

test: services vet fmt-check unit broker

services:
	@if [ -x scripts/test-services.sh ]; then scripts/test-services.sh; fi

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

unit:
	$(GO) test -race -count=1 -timeout 12m $(PKGS)

broker:
	ROCKETBUS_SECOND_PASS=1 $(GO) test -count=1 -timeout 12m $(BROKER_PKGS)

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

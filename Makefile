# Two commands matter: `make dev` (the whole platform, locally) and `make test`.
SHELL := /bin/bash
GO ?= go
MODULES := $(shell $(GO) list -m -f '{{.Dir}}' 2>/dev/null)
BIN := $(CURDIR)/bin
DEVSTACK := $(BIN)/devstack
export KCHAT_ROOT := $(CURDIR)

.PHONY: dev up down status logs test test-short lint fmt vet migrate build bench chaos fuzz

$(BIN):
	mkdir -p $(BIN)

# Every program with a main package: the devstack, each service (services/), each tool
# (tools/: chatctl, chatbench) and each client (clients/: chat).
CMDS := ./deploy/devstack $(patsubst %/main.go,./%,$(wildcard services/*/main.go tools/*/main.go clients/*/main.go))

build: | $(BIN)
	$(GO) build -o $(BIN)/ $(CMDS)

$(DEVSTACK): build

GATEWAYS ?= 1
# Kafka is secured by default (SECURE=1): brokers on SASL_SSL with a SCRAM user per service
# and ACLs (docs/operations.md, "Kafka security"); SECURE=0 runs them PLAINTEXT, for dev, up,
# test, bench and chaos alike. A stack keeps the mode it was created in and devstack refuses
# the other, saying to run `bin/devstack reset-kafka` (a stack created before the secured
# default needs that once). KCHAT_STACK_PLAINTEXT tells pkg/stacktest (make test, make chaos)
# which mode to join the stack in.
SECURE ?= 1
PLAINTEXT := $(filter 0 false no,$(SECURE))
SECURE_FLAG := $(if $(PLAINTEXT),-plaintext)
export KCHAT_STACK_PLAINTEXT := $(if $(PLAINTEXT),1)
# TRACING=1: also start Jaeger and export every service's spans to it (docs/operations.md,
# "Tracing"); the first run builds Jaeger from the module proxy (minutes).
TRACING ?=
TRACING_FLAG := $(if $(filter 1 true yes,$(TRACING)),-tracing)
# PIN_CPUS=1: start each broker, PostgreSQL and each service on one CPU of its own, dealt out
# in turn (README, "Local stack"; on the two-vCPU reference VM the e2e p99 at
# 500 msg/s fell from 383–740 to 277–280 ms).
# A process keeps the placement it was started with: `make down` first to change it.
PIN_CPUS ?= $(KCHAT_PIN_CPUS)
export KCHAT_PIN_CPUS := $(PIN_CPUS)

## dev: start Kafka (3 KRaft nodes), PostgreSQL and every service; prints the URL to open.
## `make dev GATEWAYS=2` adds a second gateway on :8082; `make dev SECURE=0` runs Kafka PLAINTEXT;
## `make dev TRACING=1` adds Jaeger and traces every message (http://127.0.0.1:16686);
## `make dev PIN_CPUS=1` starts each process on one CPU (see README, "Local stack").
dev: build
	$(DEVSTACK) up -services -gateways $(GATEWAYS) $(SECURE_FLAG) $(TRACING_FLAG)

## up: only the backing stack (Kafka + PostgreSQL), topics, ACLs and migrations; prints the
## KAFKA_* variables chatctl and chatbench need (the super user's TLS + SCRAM login).
up: build
	$(DEVSTACK) up $(SECURE_FLAG)

down: build
	$(DEVSTACK) down

status: build
	$(DEVSTACK) status

logs: build
	$(DEVSTACK) logs

migrate: build
	$(BIN)/chatctl migrate

## test: every module, race detector on, against the real stack (started here, secured unless
## SECURE=0, stopped after unless it was already running); tests log in to Kafka as the super
## user. With KAFKA_BROKERS and DATABASE_URL set, those servers are used instead, secured as
## the KAFKA_TLS_* / KAFKA_SASL_* variables say. Packages run one at a time (-p 1): some tests kill and
## restart brokers, and two cores are better spent on one test than on interleaving several.
## Every test runs once: a failure fails the target (a flaky test is a bug). Benchmarks
## (measurements, not assertions) are not run here: go test -run '^$' -bench . ./<pkg>/.
test: build
	@set -e; \
	if [ -n "$$KAFKA_BROKERS" ] && [ -n "$$DATABASE_URL" ]; then started=0; \
	elif $(DEVSTACK) status 2>/dev/null | grep -q '^kafka-1 .*running'; then started=0; $(DEVSTACK) up $(SECURE_FLAG); \
	else started=1; $(DEVSTACK) up $(SECURE_FLAG); fi; \
	$(DEVSTACK) install-jaeger >/dev/null || echo "Jaeger not built; the tracing test will fail saying why"; \
	status=0; \
	for m in $(MODULES); do \
		echo "=== $$m"; \
		(cd $$m && $(GO) test -race -count=1 -p 1 -timeout 25m ./...) || status=1; \
	done; \
	if [ $$started = 1 ] && [ -z "$$KEEP_STACK" ]; then $(DEVSTACK) down; fi; \
	exit $$status

lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	@for m in $(MODULES); do (cd $$m && $(GO) vet ./...) || exit 1; done

fmt:
	gofmt -w $$(git ls-files '*.go')

## bench: chatbench against the local platform, open loop, every figure a ratio against a
## baseline measured in the same run (~10 minutes). Starts the stack and the services
## (two gateways) if they are not running. Results, table and plots go to bench/results/.
## On the secured stack chatbench logs in as the super user: the KAFKA_* lines up prints are
## exported for it here.
## Extra flags: make bench BENCH_ARGS="-only e2e,hop".
.PHONY: bench-smoke
bench: build
	ulimit -n $$(ulimit -Hn); out=$$(RATE_LIMITS=off $(DEVSTACK) up -services -gateways 2 $(SECURE_FLAG)) || exit 1; \
	echo "$$out"; eval "$$(echo "$$out" | grep '^  export KAFKA_')"; $(BIN)/chatbench $(BENCH_ARGS)

## bench-smoke: every chatbench scenario for a few seconds, end to end, against processes
## the test starts itself (make test runs it too, as part of tools/chatbench's tests).
## The stack is reused if running, else started (and left running) by pkg/stacktest.
bench-smoke:
	cd tools/chatbench && $(GO) test -count=1 -run 'TestSmoke' -v .

## chaos: the full fault suite (~16 minutes; ~25 with -chaos.rate 200; 127.0.0.1 only): load on both gateways while
## Kafka brokers, the controller leader, the group coordinator, persistence (the outbox relay's leader), fanout,
## notification, PostgreSQL and a gateway are killed or paused, each in its own run, then
## mixed; a checker judges the history. Kills and restarts brokers and PostgreSQL of the
## local stack (started here if needed). Results: chaos/results/ (table: docs/reliability.md).
## Extra flags: make chaos CHAOS_ARGS="-chaos.faults kafka-broker-sigkill,gateway-sigkill -chaos.rate 200".
chaos: build
	$(DEVSTACK) up $(SECURE_FLAG)
	cd tools/chaos && $(GO) test -count=1 -timeout 90m -run 'TestChaos$$' -v . -args -chaos.full -chaos.out $(CURDIR)/chaos/results $(CHAOS_ARGS) 2>&1 \
		| grep -v '^\s*{"time"'; exit $${PIPESTATUS[0]}

# meridian: `make demo` to see it run, `make test` for the whole suite.
SHELL := /bin/bash
CARGO ?= cargo
BENCH_DIR ?= ../shared/bench
APT_TEST_PKGS := redis-server nftables iproute2
APT_BENCH_PKGS := nginx haproxy wrk dnsperf knot

.PHONY: all build release test lint bench demo demo-down deps bench-deps clean

all: build

build:
	$(CARGO) build --bins

release:
	$(CARGO) build --release --bins

# Install what the tests need when it is missing (as root, through apt).
deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v nft >/dev/null || missing="$$missing nftables"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then echo "installing:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null || \
	    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; }; \
	  else echo "missing:$$missing (run as root to install them)"; fi; \
	fi
	@command -v cargo-nextest >/dev/null || $(CARGO) install --locked cargo-nextest

bench-deps:
	@missing=""; \
	command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing="$$missing haproxy"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v dnsperf >/dev/null || missing="$$missing dnsperf"; \
	command -v knotd >/dev/null || [ -x /usr/sbin/knotd ] || missing="$$missing knot"; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null || \
	  { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; }; fi

# One build, then every test binary in parallel.
test: deps
	$(CARGO) nextest run --lib --bins --tests --no-fail-fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

# Proxy CPU per request against nginx and HAProxy, same machine, same run.
bench: bench-deps release
	python3 $(BENCH_DIR)/proxy_compare.py --pin --reps 3 --duration 10 \
	  --gateway-cmd 'benches/run-gateway.sh' --json target/bench-proxy.json
	$(CARGO) bench --bench raft -- 300 15
	benches/dns.sh 10
	@if [ "$$(id -u)" = 0 ]; then $(CARGO) bench --bench vip -- 20 10; else echo "vip benchmark skipped: needs root"; fi

DEMO_DIR := target/demo
demo: build demo-down
	@mkdir -p $(DEMO_DIR)
	@for i in 1 2; do \
	  nohup target/debug/meridian backend --listen 127.0.0.1:900$$i --name backend-$$i > $(DEMO_DIR)/backend-$$i.log 2>&1 & echo $$! > $(DEMO_DIR)/backend-$$i.pid; \
	done
	@nohup target/debug/meridian gateway --config cluster/gateway.toml > $(DEMO_DIR)/gateway.log 2>&1 & echo $$! > $(DEMO_DIR)/gateway.pid
	@for i in $$(seq 50); do curl -sf -o /dev/null 127.0.0.1:9901/readyz && break; sleep 0.1; done
	@echo; echo "meridian is running: one gateway (127.0.0.1:8080) in front of two backends (:9001, :9002)."
	@echo; echo "  curl -i http://127.0.0.1:8080/api/hello        # routed, prefix stripped, round robin"
	@echo "  curl -s http://127.0.0.1:9901/metrics | grep meridian_requests_total"
	@echo "  curl -s -H 'Authorization: Bearer demo-admin-token-change-me' http://127.0.0.1:9901/upstreams"
	@echo "  curl -X POST '127.0.0.1:9001/_control/health?state=down'   # watch backend-1 leave the pool"
	@echo; echo "logs in $(DEMO_DIR)/; stop with: make demo-down"; echo
	@curl -s -i http://127.0.0.1:8080/api/hello | head -n 12

demo-down:
	@for f in $(DEMO_DIR)/*.pid; do [ -f "$$f" ] && kill "$$(cat $$f)" 2>/dev/null; rm -f "$$f"; done; true

clean:
	$(CARGO) clean

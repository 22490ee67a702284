# meridian: `make demo` to see it run, `make test` for the whole suite.
SHELL := /bin/bash
CARGO ?= cargo
BENCH_DIR ?= ../shared/bench
APT_TEST_PKGS := redis-server nftables iproute2
APT_BENCH_PKGS := nginx haproxy wrk dnsperf knot

.PHONY: all build release test lint fuzz bench demo demo-walkthrough demo-down drill deps bench-deps clean

all: build

build:
	$(CARGO) build --workspace --bins

release:
	$(CARGO) build --release --bins

# Install what the tests need when it is missing (as root, through apt).
deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v nft >/dev/null || missing="$$missing nftables"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
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

# One build, then every test binary in parallel; the tests that time VIP
# takeovers and the drills run after the others, one at a time, so the
# failover times they check are measured on a machine not busy with the rest.
TIMED := binary(vip) | (binary(drills) & test(/^drill_/))
test: deps
	@fail=0; \
	$(CARGO) nextest run --workspace --lib --bins --tests --no-fail-fast -E 'not ($(TIMED))' || fail=1; \
	$(CARGO) nextest run --workspace --lib --bins --tests --no-fail-fast -E '$(TIMED)' || fail=1; \
	exit $$fail

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Every fuzz target for FUZZ_SECONDS each (nightly; cargo-fuzz installed when
# missing). New inputs join fuzz/corpus/<target>; `make test` replays the corpus.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := canonical_path authority document cache_key dns_packet client_address jwt jwks origin introspection_answer xml_to_json template graphql_query
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install --locked cargo-fuzz
	@cd fuzz && for t in $(FUZZ_TARGETS); do \
	  echo "fuzz $$t for $(FUZZ_SECONDS) s"; \
	  $(CARGO) +nightly fuzz run $$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) -max_len=4096 || exit 1; \
	done

# Proxy CPU per request against nginx and HAProxy, same machine, same run.
bench: bench-deps release
	python3 $(BENCH_DIR)/proxy_compare.py --pin --reps 3 --duration 10 \
	  --gateway-cmd 'benches/run-gateway.sh' --json docs/bench/proxy.json
	$(CARGO) bench --bench raft -- 300 15
	benches/dns.sh 10
	$(CARGO) bench --bench identity -- 2000 docs/bench/identity-micro.json
	benches/identity.sh 3 5 docs/bench/identity.json
	$(CARGO) bench --bench transform -- 2000 docs/bench/transform-micro.json
	benches/transform.sh 3 5 docs/bench/transform.json
	@if [ "$$(id -u)" = 0 ]; then $(CARGO) bench --bench vip -- 20 10; else echo "vip benchmark skipped: needs root"; fi

# The whole system: two regions of three nodes, Redis, two DNS balancers,
# sample backends and clients, in network namespaces (on loopback when not root).
TOPOLOGY ?= cluster/local.toml
MERIDIAN := target/debug/meridian
demo: deps build
	@if [ "$$(id -u)" = 0 ] && ! command -v dig >/dev/null; then echo "installing: dnsutils curl"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q dnsutils curl >/dev/null || \
	  { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dnsutils curl >/dev/null; }; fi
	@$(MERIDIAN) cluster up --topology $(TOPOLOGY)
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) -s demo-walkthrough; fi

demo-walkthrough:
	@echo; echo "== 1. a request through DNS -> VIP -> gateway -> backend, from the paris client"
	@echo "   ip netns exec mrdlocal-paris dig +short api.meridian.test   (its resolv.conf names both balancers)"
	@ip netns exec mrdlocal-paris dig +short api.meridian.test | sed 's/^/     /'
	@echo "   ip netns exec mrdlocal-paris curl -s -D - -o /dev/null http://api.meridian.test:8080/hello"
	@ip netns exec mrdlocal-paris curl -s -D - -o /dev/null http://api.meridian.test:8080/hello | grep -iE "^(HTTP|x-backend|via)" | sed 's/^/     /'
	@echo "   the same from newyork lands in us:"
	@ip netns exec mrdlocal-newyork curl -s -D - -o /dev/null http://api.meridian.test:8080/hello | grep -iE "^x-backend" | sed 's/^/     /'
	@echo; echo "== 2. what the cluster looks like"; $(MERIDIAN) cluster status --topology $(TOPOLOGY)
	@echo; echo "== next steps (each is one command):"
	@echo "   watch the cluster:        $(MERIDIAN) cluster status --watch"
	@echo "   kill a node, watch a VIP move (drill with measured report):"
	@echo "                             $(MERIDIAN) chaos run chaos/node-kill.toml"
	@echo "   take region eu down, watch DNS answers move to us:"
	@echo "                             $(MERIDIAN) chaos run chaos/region-down.toml"
	@echo "   or by hand: pkill -9 -f cluster/local/eu-n1.toml; $(MERIDIAN) cluster status"
	@echo "   reports land in target/drills/*.html; stop everything with: make demo-down"

demo-down:
	@$(MERIDIAN) cluster down --topology $(TOPOLOGY) 2>/dev/null || true

# Every drill, full length, against a cluster each starts and removes.
DRILLS := node-kill process-kill process-hang node-partition leader-kill-during-writes region-down region-down-authenticated redis-down gslb-down
drill: deps build
	@fail=0; for d in $(DRILLS); do \
	  $(MERIDIAN) chaos run chaos/$$d.toml --topology $(TOPOLOGY) --name drill || fail=1; \
	done; exit $$fail

clean:
	$(CARGO) clean

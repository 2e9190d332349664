# roost build. Plain make: out-of-tree objects, flags from pkg-config,
# header dependencies from -MMD -MP, rebuild when flags change.
#
#   make              build everything into build/
#   make test         install missing packages, build, run every test (prove)
#   make check-asan   the same tests under ASan + UBSan in build-asan/
#   make bench-micro  build and run the micro-benchmarks
#   make fuzz         run each libFuzzer target (or FUZZ_TARGETS) for FUZZ_SECONDS (default 60)
#   make format       clang-format in place; make format-check to verify
#   make lint         the shape rules (scripts/lint)
#   make deb          Debian packages in build/deb/ (docs/OPERATIONS.md, "Debian packages")
#   V=1               show the commands

PKG_CONFIG ?= pkg-config
CC ?= gcc
ifeq ($(origin CC),default)
CC := gcc
endif
BUILD ?= build
SAN ?= 0
FUZZ_SECONDS ?= 60

ifeq ($(V),1)
Q :=
else
Q := @
endif

PKGS := liburcu-qsbr liburcu-cds libngtcp2 libngtcp2_crypto_gnutls gnutls nettle opus inih \
	libmicrohttpd jansson hiredis
DEP_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
DEP_LIBS := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)
CMOCKA_CFLAGS := $(shell $(PKG_CONFIG) --cflags cmocka 2>/dev/null)
CMOCKA_LIBS := $(shell $(PKG_CONFIG) --libs cmocka 2>/dev/null)
# sd_notify (relay/main.c only): Debian libsystemd-dev.
SYSTEMD_LIBS := $(shell $(PKG_CONFIG) --libs libsystemd 2>/dev/null || echo -lsystemd)

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla -Werror
# liburcu inlines its small functions (rcu_read_lock, rcu_dereference, quiescent
# state) into code of any license with this define; without it the QSBR read
# side costs a call per operation.
CFLAGS_BASE := -std=gnu11 -D_GNU_SOURCE -DURCU_INLINE_SMALL_FUNCTIONS -pthread -g $(WARN) -I. -Ilib $(DEP_CFLAGS)

ifeq ($(SAN),1)
# libc malloc under the sanitizers: ASan must own the allocator.
OPT := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
CFLAGS_BASE += -DROOST_SANITIZE=1
ALLOC_LIBS :=
else
OPT := -O2
ALLOC_LIBS := $(shell $(PKG_CONFIG) --libs jemalloc 2>/dev/null || echo -ljemalloc)
endif

ALL_CFLAGS := $(CFLAGS_BASE) $(OPT) $(CFLAGS)
ALL_LDFLAGS := -pthread $(OPT) $(LDFLAGS)
# wslay (WebSocket framing) ships no pkg-config file in Debian.
LIBS := $(DEP_LIBS) $(ALLOC_LIBS) -lwslay -lm

# ---------------------------------------------------------------- sources

LIB_SRCS := $(sort $(wildcard lib/*/*.c))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
LIBROOST := $(BUILD)/libroost.a

TESTLIB_SRCS := $(sort $(wildcard test/common/*.c))
TESTLIB_OBJS := $(TESTLIB_SRCS:%.c=$(BUILD)/%.o)
TESTLIB := $(BUILD)/libroosttest.a

# relay/*.c except main.c form librelay.a, so tests run the relay in-process.
RELAY_MAIN := relay/main.c
RELAY_SRCS := $(sort $(wildcard relay/*.c))
RELAYLIB_SRCS := $(filter-out $(RELAY_MAIN),$(RELAY_SRCS))
RELAYLIB := $(BUILD)/librelay.a
CLI_SRCS := $(sort $(wildcard relay/cli/*.c))
BENCH_SRCS := $(sort $(wildcard bench/*.c))
MICRO_SRCS := $(sort $(wildcard bench/micro/*.c))

PROGS :=
ifneq ($(wildcard $(RELAY_MAIN)),)
PROGS += $(BUILD)/roost-relay
endif
ifneq ($(CLI_SRCS),)
PROGS += $(BUILD)/roost-cli
endif
ifneq ($(BENCH_SRCS),)
PROGS += $(BUILD)/roost-bench
endif
MICRO_BINS := $(MICRO_SRCS:bench/micro/%.c=$(BUILD)/bench/micro/%)

UNIT_SRCS := $(sort $(wildcard test/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:test/unit/%.c=$(BUILD)/test/unit/%)
INTEG_SRCS := $(sort $(wildcard test/integration/test_*.c))
INTEG_BINS := $(INTEG_SRCS:test/integration/%.c=$(BUILD)/test/integration/%)
# Test programs that are not themselves tests (e.g. the echo server).
TESTPROG_SRCS := $(sort $(wildcard test/integration/prog_*.c))
TESTPROG_BINS := $(TESTPROG_SRCS:test/integration/%.c=$(BUILD)/test/integration/%)
INTEG_SCRIPTS := $(sort $(wildcard test/integration/test_*.sh test/integration/test_*.py))

# Programs of the browser test (test/browser/): the proto.js vectors and
# the native peer; the tests themselves are scripts.
BROWSER_SRCS := $(sort $(wildcard test/browser/*.c))
BROWSER_BINS := $(BROWSER_SRCS:test/browser/%.c=$(BUILD)/test/browser/%)
BROWSER_TESTS := $(sort $(wildcard test/browser/test_*.sh))

FUZZ_SRCS := $(sort $(wildcard test/fuzz/fuzz_*.c))
FUZZ_NAMES := $(FUZZ_SRCS:test/fuzz/fuzz_%.c=%)
REPLAY_BINS := $(FUZZ_NAMES:%=$(BUILD)/test/fuzz/replay_%)

ALL_OBJS := $(LIB_OBJS) $(TESTLIB_OBJS) $(RELAY_SRCS:%.c=$(BUILD)/%.o) \
	$(CLI_SRCS:%.c=$(BUILD)/%.o) $(BENCH_SRCS:%.c=$(BUILD)/%.o) \
	$(MICRO_SRCS:%.c=$(BUILD)/%.o) $(UNIT_SRCS:%.c=$(BUILD)/%.o) \
	$(INTEG_SRCS:%.c=$(BUILD)/%.o) $(TESTPROG_SRCS:%.c=$(BUILD)/%.o) \
	$(FUZZ_SRCS:%.c=$(BUILD)/%.o) $(BROWSER_SRCS:%.c=$(BUILD)/%.o)

TEST_BINS := $(UNIT_BINS) $(INTEG_BINS) $(REPLAY_BINS)

# ---------------------------------------------------------------- targets

.PHONY: all deps test test-run check-asan bench-micro bench fuzz format format-check clean run programs capacity capacity-validate lint

all: $(LIBROOST) $(PROGS) $(MICRO_BINS) $(TEST_BINS) $(TESTPROG_BINS) $(BROWSER_BINS)

# DEPS_GROUPS: optional package groups of scripts/install-deps (deb: the
# Debian packaging tools test/integration/test_deb.sh uses; browser:
# Chromium and node for test/browser, which make test runs).
DEPS_GROUPS ?= --deb --browser
deps:
	$(Q)scripts/install-deps $(DEPS_GROUPS)

# Recursive so that pkg-config runs again after deps installed packages.
test: deps
	$(Q)$(MAKE) --no-print-directory test-run

check-asan: deps
	$(Q)$(MAKE) --no-print-directory BUILD=build-asan SAN=1 test-run

# make torture: the robustness runs (flood, impairment with NAT rebinding,
# churn, soak) against the ASan relay, about 4-6 minutes; make torture-ci is
# the short form .ci/run runs (3-4 minutes, 90 s soak); make torture-long is
# the documented long form (1 h soak). docs/TESTING.md, "Torture".
.PHONY: torture torture-ci torture-long
torture torture-ci torture-long: deps
	$(Q)$(MAKE) --no-print-directory BUILD=build-asan SAN=1 programs
	$(Q)$(MAKE) --no-print-directory programs $(TESTPROG_BINS)
	$(Q)BUILD=$(BUILD) ASAN_BUILD=build-asan test/torture/run \
		$(if $(filter torture-long,$@),--long)$(if $(filter torture-ci,$@),--ci)

# prove reads cmocka's TAP output; its last line is the summary CI reads.
test-run: all
	$(Q)CMOCKA_MESSAGE_OUTPUT=TAP ROOST_BUILD=$(BUILD) prove --exec '' --timer \
		$(TEST_BINS) $(INTEG_SCRIPTS) $(BROWSER_TESTS)

# make run: everything a fresh machine needs, then the relay in the foreground
# on 127.0.0.1:4433 with a dev certificate and token key in build/state/.
RUN_STATE := $(BUILD)/state
RUN_ARGS ?=
run: deps
	$(Q)$(MAKE) --no-print-directory programs
	$(Q)scripts/dev-cert $(RUN_STATE) >/dev/null
	$(Q)test -s $(RUN_STATE)/token.keys || $(BUILD)/roost-cli keygen --out $(RUN_STATE)/token.keys
	@echo "roost: mint a token for a client with:"
	@echo "  $(BUILD)/roost-cli token --key-file $(RUN_STATE)/token.keys --room demo --identity alice --ttl 1h"
	@echo "roost: clients trust $(RUN_STATE)/ca.pem; Ctrl-C stops the relay"
	@echo "roost: browsers: https://127.0.0.1:4443/ (WebSocket wss://127.0.0.1:4443/ws, roost.v1)"
	@echo "roost: web client (docs/WEB.md; trust $(RUN_STATE)/ca.pem in the browser, or accept its warning):"
	@for who in alice bob; do echo "  https://127.0.0.1:4443/?room=demo&name=$$who&token=$$($(BUILD)/roost-cli token \
		--key-file $(RUN_STATE)/token.keys --room demo --identity web-$$who --ttl 12h)"; done
	$(Q)exec $(BUILD)/roost-relay --listen 127.0.0.1 --port 4433 \
		--cert $(RUN_STATE)/server.pem --key $(RUN_STATE)/server.key \
		--token-keys $(RUN_STATE)/token.keys --state-dir $(RUN_STATE) \
		--ws-listen 127.0.0.1:4443 $(if $(wildcard web/index.html),--web-root web) $(RUN_ARGS)

programs: $(PROGS)

# make test-browser: the web client (web/) in a headless Chromium with a
# native participant, and its protocol module against lib/proto
# (docs/WEB.md). Needs Chromium: sudo scripts/install-deps --browser. make
# test runs the same tests, skipping the browser one without Chromium.
.PHONY: test-browser
test-browser: all
	$(Q)command -v $${CHROMIUM:-chromium} >/dev/null 2>&1 || { echo "test-browser: chromium is not installed; run: sudo scripts/install-deps --browser" >&2; exit 1; }
	$(Q)ROOST_BUILD=$(BUILD) ROOST_BROWSER_REQUIRED=1 prove --exec '' --timer $(BROWSER_TESTS)

# make capacity: quick sweep (a few minutes on 2 cores: coarse-then-fine
# ramps, steady holds), cost model and report (markdown + PNGs) in
# $(BUILD)/capacity/.
capacity: programs
	$(Q)BUILD=$(BUILD) scripts/capacity/all --quick --out $(BUILD)/capacity $(CAPACITY_ARGS)

# make capacity-validate: hold-out validation of the capacity model (fit set
# + 3 unseen room shapes in the same rounds, 3 repeats of 8-s holds, about
# 17 minutes on 2 cores, printed before it starts; CAPACITY_ARGS="--rt 10" on
# a loaded machine). Exit 1 when a relay
# CPU prediction is off by more than 10 % (capacity 15 %), 2 when a hold-out
# could not be measured. Record: $(BUILD)/capacity-validate/holdout.json.
capacity-validate: programs
	$(Q)BUILD=$(BUILD) scripts/capacity/validate --sweep --results $(BUILD)/capacity-validate $(CAPACITY_ARGS)

# make bench: a relay and the default scenario (20 rooms x 5, 10 s, --rtt 30ms;
# RTT=0 for bare loopback), then
# the same against the built-in UDP floor, and the ratios.
bench: all
	$(Q)BUILD=$(BUILD) scripts/bench-default

bench-micro: $(MICRO_BINS)
	$(Q)set -e; for b in $(MICRO_BINS); do echo "== $$b"; $$b; done

# ------------------------------------------------------------------ rules

FLAGS_FILE := $(BUILD)/.flags
FLAGS_NOW := $(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) $(LIBS)
$(FLAGS_FILE): FORCE
	@mkdir -p $(@D)
	@if [ "$$(cat $@ 2>/dev/null)" != '$(FLAGS_NOW)' ]; then echo '$(FLAGS_NOW)' > $@; fi
# Phony: with .SECONDARY below (every target secondary) a plain FORCE: is a
# missing intermediate make never needs to make, so the rules above were
# skipped once their file existed (changed flags did not rebuild).
.PHONY: FORCE
FORCE:

# Keep objects: they are not throwaway intermediates.
.SECONDARY:

$(BUILD)/%.o: %.c $(FLAGS_FILE)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(ALL_CFLAGS) $(CMOCKA_CFLAGS) -MMD -MP -c $< -o $@

# An archive is also rebuilt when its member list changes (a source file
# added or removed): a member newer than the archive is not enough, since
# an object built earlier (another branch, another target) or a removed
# one would leave the archive stale. $(BUILD)/.members-NAME holds the
# list, rewritten only when it differs (like $(FLAGS_FILE)).
MEMBERS_libroost := $(LIB_OBJS)
MEMBERS_librelay := $(RELAYLIB_SRCS:%.c=$(BUILD)/%.o)
MEMBERS_libroosttest := $(TESTLIB_OBJS)
MEMBER_FILES := $(BUILD)/.members-libroost $(BUILD)/.members-librelay \
	$(BUILD)/.members-libroosttest
$(MEMBER_FILES): $(BUILD)/.members-%: FORCE
	@mkdir -p $(@D)
	@if [ "$$(cat $@ 2>/dev/null)" != '$(MEMBERS_$*)' ]; then echo '$(MEMBERS_$*)' > $@; fi

$(LIBROOST): $(LIB_OBJS) $(BUILD)/.members-libroost
	@mkdir -p $(@D)
	$(Q)rm -f $@ && ar rcs $@ $(filter %.o,$^)

$(RELAYLIB): $(RELAYLIB_SRCS:%.c=$(BUILD)/%.o) $(BUILD)/.members-librelay
	@mkdir -p $(@D)
	$(Q)rm -f $@ && ar rcs $@ $(filter %.o,$^) $(if $(RELAYLIB_SRCS),,&& ar rcs $@)

$(TESTLIB): $(TESTLIB_OBJS) $(BUILD)/.members-libroosttest
	@mkdir -p $(@D)
	$(Q)rm -f $@ && ar rcs $@ $(filter %.o,$^) $(if $(TESTLIB_OBJS),,&& ar rcs $@)

LINK = @$(if $(Q),echo "  LD      $@"); mkdir -p $(@D); \
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(filter %.a,$^) $(LIBS)

$(BUILD)/roost-relay: $(BUILD)/relay/main.o $(RELAYLIB) $(LIBROOST)
	$(LINK) $(SYSTEMD_LIBS)
# roost-cli call reads and writes WAV through libsndfile (Debian
# libsndfile1-dev); only roost-cli and the listening test's helper link it.
SNDFILE_LIBS := $(shell $(PKG_CONFIG) --libs sndfile 2>/dev/null || echo -lsndfile)
$(BUILD)/roost-cli: $(CLI_SRCS:%.c=$(BUILD)/%.o) $(LIBROOST)
	$(LINK) $(SNDFILE_LIBS)
$(BUILD)/test/unit/test_jbuf: $(BUILD)/test/unit/test_jbuf.o $(BUILD)/relay/cli/jbuf.o $(TESTLIB) \
		$(RELAYLIB) $(LIBROOST)
	$(LINK) $(CMOCKA_LIBS)
$(BUILD)/test/unit/test_bench_metrics: $(BUILD)/test/unit/test_bench_metrics.o $(BUILD)/bench/metrics.o \
		$(TESTLIB) $(RELAYLIB) $(LIBROOST)
	$(LINK) $(CMOCKA_LIBS)
$(BUILD)/test/integration/prog_wavcorr: $(BUILD)/test/integration/prog_wavcorr.o \
		$(BUILD)/relay/cli/wav.o $(LIBROOST)
	$(LINK) $(SNDFILE_LIBS)
$(BUILD)/roost-bench: $(BENCH_SRCS:%.c=$(BUILD)/%.o) $(LIBROOST)
	$(LINK)
$(BUILD)/bench/micro/%: $(BUILD)/bench/micro/%.o $(LIBROOST)
	$(LINK)
$(BUILD)/test/browser/%: $(BUILD)/test/browser/%.o $(LIBROOST)
	$(LINK)

$(BUILD)/test/unit/%: $(BUILD)/test/unit/%.o $(TESTLIB) $(RELAYLIB) $(LIBROOST)
	$(LINK) $(CMOCKA_LIBS)
$(BUILD)/test/integration/%: $(BUILD)/test/integration/%.o $(TESTLIB) $(RELAYLIB) $(LIBROOST)
	$(LINK) $(CMOCKA_LIBS)

# Replay builds: each fuzz target linked with a main that runs its corpus.
# A target may need sources outside lib/: FUZZ_EXTRA_<name> lists them.
FUZZ_EXTRA_config := relay/config.c relay/config_ini.c relay/config_parse.c relay/config_cluster.c
$(BUILD)/test/fuzz/replay_%: $(BUILD)/test/fuzz/fuzz_%.o $(BUILD)/test/fuzz/replay/main.o $(LIBROOST)
	$(LINK)
$(BUILD)/test/fuzz/replay_config: $(BUILD)/test/fuzz/fuzz_config.o $(BUILD)/test/fuzz/replay/main.o \
		$(FUZZ_EXTRA_config:%.c=$(BUILD)/%.o) $(LIBROOST)
	$(LINK)

# libFuzzer builds with clang, ASan and UBSan, in build-fuzz/.
FUZZ_BUILD := build-fuzz
FUZZ_CFLAGS := -std=gnu11 -D_GNU_SOURCE -DURCU_INLINE_SMALL_FUNCTIONS -g -O1 -I. -Ilib $(DEP_CFLAGS) -DROOST_SANITIZE=1 \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
# make fuzz FUZZ_TARGETS=config runs only the named targets.
FUZZ_TARGETS ?= $(FUZZ_NAMES)
fuzz: deps
	$(Q)set -e; mkdir -p $(FUZZ_BUILD); for n in $(FUZZ_TARGETS); do \
		case $$n in config) extra="$(FUZZ_EXTRA_config)";; *) extra=;; esac; \
		echo "== fuzz $$n ($(FUZZ_SECONDS)s)"; \
		clang $(FUZZ_CFLAGS) -o $(FUZZ_BUILD)/fuzz_$$n test/fuzz/fuzz_$$n.c $$extra $(LIB_SRCS) $(DEP_LIBS) -lwslay -lm; \
		mkdir -p $(FUZZ_BUILD)/corpus/$$n; \
		$(FUZZ_BUILD)/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			$(FUZZ_BUILD)/corpus/$$n test/fuzz/corpus/$$n 2>&1 | tail -25; \
	done

# make lint: the shape rules of docs/HACKING.md (no locks on the lock-free
# paths, layers pointing down, no oversized files).
lint:
	$(Q)scripts/lint

FORMAT_SRCS = $(shell find lib relay bench test -name '*.[ch]' 2>/dev/null)
format:
	$(Q)clang-format -i $(FORMAT_SRCS)
format-check:
	$(Q)clang-format --dry-run -Werror $(FORMAT_SRCS)

clean:
	$(Q)rm -rf build build-asan build-fuzz

-include $(ALL_OBJS:.o=.d)

# ============================================ libroost-client and install
# (issue 19; keep this block together.)
#
# The client library: the lib/ objects it needs compiled a second time with
# -fPIC into $(BUILD)/pic/ (the lib/ objects are not PIC), always optimised
# and without sanitizers (it is the product, linked by programs that are not
# sanitized), then
#   - libroost-client.so.1.1.0 (soname libroost-client.so.1) exporting only
#     roost_* (version script lib/client/roost-client.map), unused code
#     dropped by --gc-sections;
#   - libroost-client.a: the same objects in one relocatable object whose
#     symbols other than roost_* are made local, so the static and shared
#     libraries have the same surface and no hist_/quic_/... clash with an
#     application's names;
#   - roost-client.pc from lib/client/roost-client.pc.in with PREFIX.
# make install puts programs, library, header, .pc, --help texts, docs,
# the systemd unit and the example config under PREFIX (FHS); configuration
# goes to SYSCONFDIR = PREFIX/etc by default (packagers: SYSCONFDIR=/etc).

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
DATADIR ?= $(PREFIX)/share
DOCDIR ?= $(DATADIR)/doc/roost
SYSCONFDIR ?= $(PREFIX)/etc
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
INSTALL ?= install

CLIENT_VERSION := 1.1.0
CLIENT_SOMAJOR := 1
CLIENT_SONAME := libroost-client.so.$(CLIENT_SOMAJOR)
CLIENT_SO := $(BUILD)/libroost-client.so.$(CLIENT_VERSION)
CLIENT_A := $(BUILD)/libroost-client.a
CLIENT_PC := $(BUILD)/roost-client.pc
CLIENT_MAP := lib/client/roost-client.map
# lib/room is the relay's; the rest of lib/ is what a client links.
CLIENT_LIB_SRCS := $(sort $(wildcard lib/core/*.c lib/proto/*.c lib/quic/*.c lib/client/*.c))
CLIENT_PIC_OBJS := $(CLIENT_LIB_SRCS:%.c=$(BUILD)/pic/%.o)
CLIENT_PKGS := libngtcp2 libngtcp2_crypto_gnutls gnutls nettle liburcu-qsbr
CLIENT_DEP_LIBS := $(shell $(PKG_CONFIG) --libs $(CLIENT_PKGS) 2>/dev/null)
PIC_CFLAGS := $(filter-out -DROOST_SANITIZE=1,$(CFLAGS_BASE)) -O2 -fPIC \
	-ffunction-sections -fdata-sections $(CFLAGS)
HELP_DOCS := $(PROGS:$(BUILD)/%=$(BUILD)/doc/%.txt)
CLIENT_ALL := $(CLIENT_SO) $(BUILD)/$(CLIENT_SONAME) $(BUILD)/libroost-client.so \
	$(CLIENT_A) $(CLIENT_PC)

.PHONY: client-lib install uninstall client-pc-force
all: $(CLIENT_ALL)
client-lib: $(CLIENT_ALL)

$(BUILD)/pic/%.o: %.c $(FLAGS_FILE)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC PIC  $<")
	$(Q)$(CC) $(PIC_CFLAGS) -MMD -MP -c $< -o $@

$(CLIENT_SO): $(CLIENT_PIC_OBJS) $(CLIENT_MAP)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -shared -pthread -Wl,-soname,$(CLIENT_SONAME) -Wl,--version-script,$(CLIENT_MAP) \
		-Wl,--gc-sections -Wl,--no-undefined -Wl,--as-needed $(LDFLAGS) -o $@ \
		$(CLIENT_PIC_OBJS) $(CLIENT_DEP_LIBS) -lm
$(BUILD)/$(CLIENT_SONAME) $(BUILD)/libroost-client.so: $(CLIENT_SO)
	$(Q)ln -sf $(notdir $<) $@

$(CLIENT_A): $(CLIENT_PIC_OBJS)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ $(BUILD)/pic/roost-client.o
	$(Q)ld -r -o $(BUILD)/pic/roost-client.o $(CLIENT_PIC_OBJS)
	$(Q)objcopy --wildcard --keep-global-symbol='roost_*' $(BUILD)/pic/roost-client.o
	$(Q)ar rcs $@ $(BUILD)/pic/roost-client.o

# Regenerated when PREFIX or LIBDIR change (make install PREFIX=... after make),
# replaced only when its text changes.
$(CLIENT_PC): lib/client/roost-client.pc.in client-pc-force
	@mkdir -p $(@D)
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
		-e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(CLIENT_VERSION)|' \
		-e 's|@REQUIRES_PRIVATE@|$(CLIENT_PKGS)|' $< > $@.tmp
	$(Q)if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi

# Reference texts from the programs' own --help (they cannot drift).
$(BUILD)/doc/%.txt: $(BUILD)/%
	@mkdir -p $(@D)
	$(Q)$< --help > $@.tmp 2>&1; test -s $@.tmp && mv $@.tmp $@

INSTALL_DOCS := README.md $(wildcard docs/*.md)
install: $(PROGS) $(CLIENT_ALL) $(HELP_DOCS)
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR) \
		$(DESTDIR)$(INCLUDEDIR)/roost $(DESTDIR)$(DOCDIR) \
		$(DESTDIR)$(SYSCONFDIR)/roost $(DESTDIR)$(SYSTEMDUNITDIR)
	$(INSTALL) -m 0755 $(PROGS) $(DESTDIR)$(BINDIR)/
	$(INSTALL) -m 0755 $(CLIENT_SO) $(DESTDIR)$(LIBDIR)/
	ln -sf $(notdir $(CLIENT_SO)) $(DESTDIR)$(LIBDIR)/$(CLIENT_SONAME)
	ln -sf $(CLIENT_SONAME) $(DESTDIR)$(LIBDIR)/libroost-client.so
	$(INSTALL) -m 0644 $(CLIENT_A) $(DESTDIR)$(LIBDIR)/
	$(INSTALL) -m 0644 $(CLIENT_PC) $(DESTDIR)$(PKGCONFIGDIR)/
	$(INSTALL) -m 0644 include/roost/client.h $(DESTDIR)$(INCLUDEDIR)/roost/
	$(INSTALL) -m 0644 $(HELP_DOCS) $(INSTALL_DOCS) examples/tone.c $(DESTDIR)$(DOCDIR)/
	sed -e 's|/usr/local/bin|$(BINDIR)|g' -e 's|/etc/roost|$(SYSCONFDIR)/roost|g' \
		scripts/roost-relay.service > $(DESTDIR)$(SYSTEMDUNITDIR)/roost-relay.service
	chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/roost-relay.service
	$(INSTALL) -m 0644 scripts/roost.conf.example $(DESTDIR)$(SYSCONFDIR)/roost/

uninstall:
	rm -f $(PROGS:$(BUILD)/%=$(DESTDIR)$(BINDIR)/%)
	rm -f $(DESTDIR)$(LIBDIR)/$(notdir $(CLIENT_SO)) $(DESTDIR)$(LIBDIR)/$(CLIENT_SONAME) \
		$(DESTDIR)$(LIBDIR)/libroost-client.so $(DESTDIR)$(LIBDIR)/libroost-client.a \
		$(DESTDIR)$(PKGCONFIGDIR)/roost-client.pc $(DESTDIR)$(INCLUDEDIR)/roost/client.h \
		$(DESTDIR)$(SYSTEMDUNITDIR)/roost-relay.service \
		$(DESTDIR)$(SYSCONFDIR)/roost/roost.conf.example
	rm -f $(addprefix $(DESTDIR)$(DOCDIR)/,$(notdir $(HELP_DOCS) $(INSTALL_DOCS)) tone.c)
	-rmdir $(DESTDIR)$(INCLUDEDIR)/roost $(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSCONFDIR)/roost 2>/dev/null

# The public header and the example keep the same format as lib/.
FORMAT_SRCS += $(shell find include examples -name '*.[ch]' 2>/dev/null)

-include $(CLIENT_PIC_OBJS:.o=.d)
# ======================================== end libroost-client and install

# ================================================ Debian packages (issue 19)
# make deb: roost-relay, libroost-client1, libroost-client-dev and
# roost-tools (debian/) built with dpkg-buildpackage in a copy of the tree
# (git's tracked and untracked-but-not-ignored files) under $(BUILD)/deb/,
# so the source tree stays clean; the .debs land in $(BUILD)/deb/, then
# lintian checks them. make deb-quick: the same debian/rules, but it
# packages the binaries already built in $(BUILD) (ROOST_PREBUILT: nothing
# is compiled again; what the tests use, in seconds rather than minutes).
DEB_DIR := $(BUILD)/deb
DEB_TREE := $(DEB_DIR)/roost
.PHONY: deb deb-quick deb-tree
deb-tree:
	$(Q)rm -rf $(DEB_DIR) && mkdir -p $(DEB_TREE)
	$(Q)if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
		git ls-files -z -co --exclude-standard | \
			tar --null -T - --ignore-failed-read -cf - 2>/dev/null; \
	else \
		tar --exclude='./build*' --exclude=./.git -cf - .; \
	fi | tar -xf - -C $(DEB_TREE)
deb: deb-tree
	$(Q)cd $(DEB_TREE) && dpkg-buildpackage -b -uc -us
	$(Q)if command -v lintian >/dev/null 2>&1; then \
		lintian --fail-on error,warning --info $(DEB_DIR)/*.changes; fi
# (debian/rules binary without dpkg-buildpackage's source, build-deps,
# .buildinfo and .changes steps: Rules-Requires-Root is no, so no fakeroot.)
deb-quick: $(PROGS) $(CLIENT_ALL)
	$(Q)$(MAKE) --no-print-directory deb-tree
	$(Q)cd $(DEB_TREE) && ROOST_PREBUILT=$(abspath .):$(abspath $(BUILD)) \
		DEB_BUILD_OPTIONS="nocheck noautodbgsym" debian/rules binary
# ============================================ end Debian packages

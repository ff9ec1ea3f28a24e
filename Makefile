# mprpc — plain GNU make. See README.md for the quick start.
#
# Layout conventions the rules below rely on (add files, not rules):
#   src/{core,rt,registry,util,app}/*.c -> libmprpc.{a,so}, the one library users link
#   src/core/*.c + src/util/log.c    -> also libmprpc-core.a: the engines, no libev,
#                                       no ZooKeeper, no sockets (docs/design.md)
#   src/proto/*.proto                -> compiled into both libraries
#   examples/<dir>/*.proto           -> compiled into every program of <dir>
#   examples/<dir>/*.c               -> one program each, build/bin/<name>
#   sim/*.c (main.c has main)        -> build/bin/mprpc-sim, linked with libmprpc-core.a only
#   tests/test_*.c                   -> one cmocka binary each (ASan+UBSan)
#   tests/proto/*.proto              -> compiled into every test and fuzz binary
#   src/cli/*.c                      -> build/bin/mprpc (not in the library)
#   tests/support/*.c                -> linked into every test
#   tests/support/fake_*.c           -> the fake loop/transport/registry (no cmocka),
#                                       linked into the fuzz harnesses too
#   tests/bench/*.c                  -> one program each, build/bin/<name>
#   tests/chaos/chaos_*.c            -> one program each, build/bin/<name>, linked with
#                                       tests/chaos/support/*.c, sim/ and libmprpc.a (make chaos)
#   fuzz/fuzz_*.c                    -> harnesses (LLVMFuzzerTestOneInput), linked with
#                                       libmprpc-core.a and src/util only (fuzz_tls:
#                                       also src/rt/tls*.c and OpenSSL)

SHELL := /bin/bash
CC ?= cc
BUILD ?= build
PREFIX ?= /usr/local
DESTDIR ?=
VERSION := 0.1.0

WARN := -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes \
        -Wmissing-prototypes -Wno-missing-field-initializers -Wvla
CSTD := -std=c11 -D_GNU_SOURCE -DTHREADED
INCS := -Iinclude -Isrc -I$(BUILD)/gen
# Link-time optimisation with GCC: the hot path crosses channel, endpoint,
# frame, transport and loop files, and inlining across them takes ~5% off
# the instructions per call (docs/performance.md). Fat objects, so the
# static library still links without LTO (or with another compiler).
LTO := $(if $(shell $(CC) --version 2>/dev/null | grep -q 'Free Software Foundation' && echo y),-flto=auto -ffat-lto-objects)
OPT ?= -O2 $(LTO)
CFLAGS_COMMON := $(CSTD) $(INCS) -g -fPIC -pthread -fvisibility=hidden
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
# The core's own dependencies (http_parser for the console's HTTP layer),
# src/util's (jansson for the JSON module), then the runtime's and the
# registry's.
CORE_LIBS := -lprotobuf-c -lsnappy -lz -lhttp_parser -lpthread -lm
UTIL_LIBS := -ljansson
# OpenSSL for the TLS transport decorator (src/rt/tls.c).
TLS_LIBS := -lssl -lcrypto
LIBS := $(CORE_LIBS) $(UTIL_LIBS) -lev -lzookeeper_mt $(TLS_LIBS)

LIB_SRC := $(sort $(wildcard src/core/*.c src/rt/*.c src/registry/*.c src/util/*.c src/app/*.c))
CORE_SRC := $(sort $(wildcard src/core/*.c)) src/util/log.c
UTIL_SRC := $(filter-out src/util/log.c,$(sort $(wildcard src/util/*.c)))
LIB_PROTO := $(sort $(wildcard src/proto/*.proto))
LIB_GEN_C := $(patsubst src/proto/%.proto,$(BUILD)/gen/%.pb-c.c,$(LIB_PROTO))
LIB_GEN_H := $(LIB_GEN_C:.c=.h)

EX_DIRS := $(sort $(patsubst examples/%/,%,$(dir $(wildcard examples/*/*.c))))
EX_PROTO := $(sort $(wildcard examples/*/*.proto))
EX_GEN_C := $(patsubst examples/%.proto,$(BUILD)/gen/examples/%.pb-c.c,$(EX_PROTO))
EX_GEN_H := $(EX_GEN_C:.c=.h)
EX_PROGS := $(foreach f,$(wildcard examples/*/*.c),$(BUILD)/bin/$(basename $(notdir $(f))))

TEST_PROTO := $(sort $(wildcard tests/proto/*.proto))
TEST_GEN_C := $(patsubst tests/proto/%.proto,$(BUILD)/gen/tests/%.pb-c.c,$(TEST_PROTO))
TEST_GEN_H := $(TEST_GEN_C:.c=.h)

SIM_SRC := $(filter-out sim/main.c,$(sort $(wildcard sim/*.c)))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_SUPPORT := $(sort $(wildcard tests/support/*.c))
FAKE_SUPPORT := $(sort $(wildcard tests/support/fake_*.c))
BENCH_SRC := $(sort $(wildcard tests/bench/*.c))
FUZZ_SRC := $(sort $(wildcard fuzz/fuzz_*.c))
CHAOS_SRC := $(sort $(wildcard tests/chaos/chaos_*.c))
CHAOS_SUPPORT := $(sort $(wildcard tests/chaos/support/*.c))

CLI_SRC := $(sort $(wildcard src/cli/*.c))

ALL_GEN_H := $(LIB_GEN_H) $(EX_GEN_H) $(TEST_GEN_H)

# --- object lists per flavour: rel (release, -O2) and asan (tests) ---------
obj = $(patsubst %.c,$(BUILD)/$(1)/%.o,$(2))
LIB_OBJ_rel := $(call obj,rel,$(LIB_SRC)) $(patsubst $(BUILD)/gen/%.c,$(BUILD)/rel/gen/%.o,$(LIB_GEN_C))
LIB_OBJ_asan := $(call obj,asan,$(LIB_SRC)) $(patsubst $(BUILD)/gen/%.c,$(BUILD)/asan/gen/%.o,$(LIB_GEN_C))
CORE_OBJ_rel := $(call obj,rel,$(CORE_SRC)) $(patsubst $(BUILD)/gen/%.c,$(BUILD)/rel/gen/%.o,$(LIB_GEN_C))
CORE_OBJ_asan := $(call obj,asan,$(CORE_SRC)) $(patsubst $(BUILD)/gen/%.c,$(BUILD)/asan/gen/%.o,$(LIB_GEN_C))
UTIL_OBJ_asan := $(call obj,asan,$(UTIL_SRC))
EXGEN_OBJ_rel := $(patsubst $(BUILD)/gen/%.c,$(BUILD)/rel/gen/%.o,$(EX_GEN_C))
EXGEN_OBJ_asan := $(patsubst $(BUILD)/gen/%.c,$(BUILD)/asan/gen/%.o,$(EX_GEN_C))
TESTGEN_OBJ_asan := $(patsubst $(BUILD)/gen/%.c,$(BUILD)/asan/gen/%.o,$(TEST_GEN_C))
CLI_OBJ_rel := $(call obj,rel,$(CLI_SRC))
SIM_OBJ_rel := $(call obj,rel,$(SIM_SRC))
SIM_OBJ_asan := $(call obj,asan,$(SIM_SRC))
TEST_BINS := $(patsubst tests/%.c,$(BUILD)/asan/tests/%,$(TEST_SRC))
SUPPORT_OBJ := $(call obj,asan,$(TEST_SUPPORT))
FAKE_OBJ := $(call obj,asan,$(FAKE_SUPPORT))
BENCH_PROGS := $(patsubst tests/bench/%.c,$(BUILD)/bin/%,$(BENCH_SRC))
FUZZ_REPLAY := $(patsubst fuzz/%.c,$(BUILD)/asan/fuzz/%,$(FUZZ_SRC))
CHAOS_PROGS := $(patsubst tests/chaos/%.c,$(BUILD)/bin/%,$(CHAOS_SRC))
CHAOS_SUPPORT_OBJ := $(call obj,rel,$(CHAOS_SUPPORT))

# Quiet by default: `make V=1` prints full commands.
ifeq ($(V),1)
Q :=
say = @true
else
Q := @
say = @printf '  %-6s %s\n' $(1) $(2)
endif

FLAGS_rel := $(CFLAGS_COMMON) $(OPT)
FLAGS_asan := $(CFLAGS_COMMON) -O1 $(SAN)

.PHONY: all lib test sim fuzz demo bench chaos stress lint install clean deps check-deps tests-build sim-build
.DEFAULT_GOAL := all
.SECONDARY:
.DELETE_ON_ERROR:

all: check-deps lib $(EX_PROGS) $(BUILD)/bin/mprpc-sim $(BENCH_PROGS) $(BUILD)/bin/mprpc $(CHAOS_PROGS)

lib: $(BUILD)/libmprpc.a $(BUILD)/libmprpc.so $(BUILD)/libmprpc-core.a

# --- dependencies: install missing Debian packages on demand --------------
check-deps:
	@bash ci/install-deps.sh --check-or-install

deps:
	@bash ci/install-deps.sh

# Under make -j the check-deps prerequisite above races the compile jobs, so
# on a fresh machine protoc-c could run before it is installed. make remakes
# an included makefile before it runs any other rule, so this stamp installs
# what is missing first; it is redone when the package list changes.
ifeq ($(filter clean deps,$(MAKECMDGOALS)),)
-include $(BUILD)/deps.mk
endif
$(BUILD)/deps.mk: ci/install-deps.sh
	@bash ci/install-deps.sh --check-or-install
	@mkdir -p $(@D) && echo '# the packages of ci/install-deps.sh were present' > $@

# --- code generation ------------------------------------------------------
$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: src/proto/%.proto
	@mkdir -p $(@D)
	$(call say,PROTOC,$<)
	$(Q)protoc-c --proto_path=src/proto --c_out=$(BUILD)/gen $<

# protoc-c 1.4 keeps a method named like a C keyword as is (rpc Register ->
# member `register`), which does not compile; such members get a trailing _.
CKEYWORDS := auto|break|case|char|const|continue|default|do|double|else|enum|extern|float|for|goto|if|inline|int|long|register|restrict|return|short|signed|sizeof|static|struct|switch|typedef|union|unsigned|void|volatile|while
$(BUILD)/gen/examples/%.pb-c.c $(BUILD)/gen/examples/%.pb-c.h: examples/%.proto
	@mkdir -p $(@D)
	$(call say,PROTOC,$<)
	$(Q)protoc-c --proto_path=$(dir $<) --c_out=$(@D) $<
	@sed -i -E 's/\(\*($(CKEYWORDS))\)\(/(*\1_)(/; s/(function_prefix__ ## )($(CKEYWORDS))([ ,]|$$)/\1\2_\3/' $(@D)/$(basename $(notdir $<)).pb-c.h

$(BUILD)/gen/tests/%.pb-c.c $(BUILD)/gen/tests/%.pb-c.h: tests/proto/%.proto
	@mkdir -p $(@D)
	$(call say,PROTOC,$<)
	$(Q)protoc-c --proto_path=tests/proto --c_out=$(@D) $<

# --- compilation ----------------------------------------------------------
# Our code gets the full warning set; generated code only the defaults.
# Each flavour's objects depend on a stamp holding its compiler and flags,
# rewritten only when they change: a new OPT (or CC) rebuilds, no clean needed.
.PHONY: FORCE
FORCE:
define flavour
$(BUILD)/$(1)/.flags: FORCE
	@mkdir -p $$(@D)
	@echo '$$(CC) $$(FLAGS_$(1)) $$(WARN)' | cmp -s - $$@ || echo '$$(CC) $$(FLAGS_$(1)) $$(WARN)' > $$@

$(BUILD)/$(1)/%.o: %.c $(BUILD)/$(1)/.flags | $(ALL_GEN_H)
	@mkdir -p $$(@D)
	$$(call say,CC,$$@)
	$(Q)$$(CC) $$(FLAGS_$(1)) $$(WARN) $$(EXTRA_CFLAGS) -MMD -MP -c $$< -o $$@

$(BUILD)/$(1)/examples/%.o: examples/%.c $(BUILD)/$(1)/.flags | $(ALL_GEN_H)
	@mkdir -p $$(@D)
	$$(call say,CC,$$@)
	$(Q)$$(CC) $$(FLAGS_$(1)) $$(WARN) $$(EXTRA_CFLAGS) -I$(BUILD)/gen/examples/$$(firstword $$(subst /, ,$$*)) -MMD -MP -c $$< -o $$@

$(BUILD)/$(1)/gen/%.o: $(BUILD)/gen/%.c $(BUILD)/$(1)/.flags | $(ALL_GEN_H)
	@mkdir -p $$(@D)
	$$(call say,CC,$$@)
	$(Q)$$(CC) $$(FLAGS_$(1)) -c $$< -o $$@
endef
$(eval $(call flavour,rel))
$(eval $(call flavour,asan))

# Test, sim and fuzz code may include any example's generated headers;
# test and fuzz code also tests/proto's.
EX_INCS := $(addprefix -I$(BUILD)/gen/examples/,$(EX_DIRS))
$(BUILD)/asan/tests/%.o $(BUILD)/asan/sim/%.o $(BUILD)/rel/sim/%.o $(BUILD)/asan/fuzz/%.o $(BUILD)/rel/tests/%.o: EXTRA_CFLAGS += $(EX_INCS)
# Harnesses include the shared fakes as "tests/support/fake_env.h".
$(BUILD)/asan/fuzz/%.o: EXTRA_CFLAGS += -I.
$(BUILD)/asan/tests/%.o $(BUILD)/asan/fuzz/%.o: EXTRA_CFLAGS += -I$(BUILD)/gen/tests

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# --- libraries ------------------------------------------------------------
$(BUILD)/libmprpc.a: $(LIB_OBJ_rel)
	@rm -f $@
	$(call say,AR,$@)
	$(Q)ar rcs $@ $^

$(BUILD)/libmprpc.so: $(LIB_OBJ_rel)
	$(call say,LD,$@)
	$(Q)$(CC) -shared -pthread -Wl,-soname,libmprpc.so.0 -o $@ $^ $(LIBS)

$(BUILD)/asan/libmprpc.a: $(LIB_OBJ_asan)
	@rm -f $@
	$(call say,AR,$@)
	$(Q)ar rcs $@ $^

# The engines alone. The simulator and the fuzzers link this and not
# libmprpc.a, so a reach from src/core into the runtime fails at link time.
$(BUILD)/libmprpc-core.a: $(CORE_OBJ_rel)
	@rm -f $@
	$(call say,AR,$@)
	$(Q)ar rcs $@ $^

$(BUILD)/asan/libmprpc-core.a: $(CORE_OBJ_asan)
	@rm -f $@
	$(call say,AR,$@)
	$(Q)ar rcs $@ $^

# --- programs -------------------------------------------------------------
# examples/<dir>/<prog>.c links with <dir>'s generated protos.
define example_prog
$(BUILD)/bin/$(basename $(notdir $(1))): $(BUILD)/rel/$(basename $(1)).o $(patsubst examples/%.proto,$(BUILD)/rel/gen/examples/%.pb-c.o,$(wildcard $(dir $(1))*.proto)) $(BUILD)/libmprpc.a
	@mkdir -p $$(@D)
	$$(call say,LD,$$@)
	$(Q)$$(CC) -pthread -o $$@ $$^ $$(LIBS)
endef
$(foreach f,$(wildcard examples/*/*.c),$(eval $(call example_prog,$(f))))
# user_consumer calls the friend service too.
$(BUILD)/bin/user_consumer: $(BUILD)/rel/gen/examples/friend/friend.pb-c.o

# The `mprpc` command: a client of the public API (docs/cli.md).
$(BUILD)/bin/mprpc: $(CLI_OBJ_rel) $(BUILD)/libmprpc.a
	@mkdir -p $(@D)
	$(call say,LD,$@)
	$(Q)$(CC) -pthread -o $@ $^ $(LIBS)

$(BUILD)/bin/mprpc-sim: $(BUILD)/rel/sim/main.o $(SIM_OBJ_rel) $(EXGEN_OBJ_rel) $(BUILD)/libmprpc-core.a
	@mkdir -p $(@D)
	$(call say,LD,$@)
	$(Q)$(CC) -pthread -o $@ $^ $(CORE_LIBS)

$(BUILD)/asan/bin/mprpc-sim: $(BUILD)/asan/sim/main.o $(SIM_OBJ_asan) $(EXGEN_OBJ_asan) $(BUILD)/asan/libmprpc-core.a
	@mkdir -p $(@D)
	$(call say,LD,$@)
	$(Q)$(CC) $(SAN) -pthread -o $@ $^ $(CORE_LIBS)

# The hostile clients of `make stress` (ci/stress.sh): libc only.
$(BUILD)/bin/mprpc-attack: tests/stress/mprpc_attack.c
	@mkdir -p $(@D)
	$(call say,CC,$@)
	$(Q)$(CC) $(CFLAGS_COMMON) $(OPT) -o $@ $<

$(BUILD)/bin/%: $(BUILD)/rel/tests/bench/%.o $(EXGEN_OBJ_rel) $(BUILD)/libmprpc.a
	@mkdir -p $(@D)
	$(call say,LD,$@)
	$(Q)$(CC) -pthread -o $@ $^ $(LIBS)

# Chaos programs: the stem is shorter than the bench rule's, so this one wins.
# connect is exported so that it interposes libc's for the ZooKeeper client
# too (tests/chaos/support/bindsrc.c).
$(BUILD)/bin/chaos_%: $(BUILD)/rel/tests/chaos/chaos_%.o $(CHAOS_SUPPORT_OBJ) $(SIM_OBJ_rel) $(EXGEN_OBJ_rel) $(BUILD)/libmprpc.a
	@mkdir -p $(@D)
	$(call say,LD,$@)
	$(Q)$(CC) -pthread -Wl,--export-dynamic-symbol=connect -o $@ $^ $(LIBS)

$(BUILD)/asan/tests/%: $(BUILD)/asan/tests/%.o $(SUPPORT_OBJ) $(SIM_OBJ_asan) $(EXGEN_OBJ_asan) $(TESTGEN_OBJ_asan) $(BUILD)/asan/libmprpc.a
	@mkdir -p $(@D)
	$(call say,LD,$@)
	$(Q)$(CC) $(SAN) -pthread -o $@ $^ $(LIBS) -lcmocka

# Fuzz harnesses replayed over their corpora by `make test`.
$(BUILD)/asan/fuzz/%: $(BUILD)/asan/fuzz/%.o $(BUILD)/asan/fuzz/support/replay.o $(FAKE_OBJ) $(SIM_OBJ_asan) $(EXGEN_OBJ_asan) $(TESTGEN_OBJ_asan) $(UTIL_OBJ_asan) $(BUILD)/asan/libmprpc-core.a
	@mkdir -p $(@D)
	$(call say,LD,$@)
	$(Q)$(CC) $(SAN) -pthread -o $@ $^ $(CORE_LIBS) $(UTIL_LIBS)

# fuzz_tls drives the TLS decorator of src/rt, the one runtime file a
# harness links (over the fake transport), with OpenSSL.
$(BUILD)/asan/fuzz/fuzz_tls: $(BUILD)/asan/src/rt/tls.o $(BUILD)/asan/src/rt/tls_ctx.o
$(BUILD)/asan/fuzz/fuzz_tls: UTIL_LIBS += $(TLS_LIBS)

# --- top-level targets ----------------------------------------------------
tests-build: check-deps $(TEST_BINS) $(FUZZ_REPLAY) $(BUILD)/asan/bin/mprpc-sim

lint: check-deps
	@bash ci/lint.sh

test: lint tests-build $(EX_PROGS) $(BUILD)/bin/mprpc-sim $(BUILD)/libmprpc.so $(BUILD)/bin/mprpc $(CHAOS_PROGS) $(BUILD)/bin/mprpc-attack
	@bash ci/run-tests.sh $(BUILD)

sim: check-deps $(BUILD)/bin/mprpc-sim
	$(BUILD)/bin/mprpc-sim --all --seeds $${SIM_SEEDS:-100}

fuzz: check-deps
	@if [ -f ci/fuzz.sh ]; then FUZZ_TARGET="$(FUZZ_TARGET)" FUZZ_SECONDS="$(FUZZ_SECONDS)" BUILD="$(BUILD)" bash ci/fuzz.sh; \
	 else echo "make fuzz: not built yet"; fi

demo: check-deps all
	@if [ -f ci/demo.sh ]; then TLS="$(TLS)" BUILD="$(BUILD)" bash ci/demo.sh $(REGISTRY); else echo "make demo: not built yet"; fi

# The real runtime under real network faults in a private network namespace
# (docs/simulator.md, "Chaos runs"): CHAOS_SCENARIO=NAME CHAOS_SEED=N
# CHAOS_QUICK=1 (the two-minute subset) CHAOS_OUT=DIR CHAOS_BUG=exec_twice
# (self-test: the checker must fail the run).
chaos: check-deps $(CHAOS_PROGS) $(BUILD)/bin/mprpc-sim
	@BUILD="$(BUILD)" CHAOS_SCENARIO="$(CHAOS_SCENARIO)" CHAOS_SEED="$(CHAOS_SEED)" \
	  CHAOS_QUICK="$(CHAOS_QUICK)" CHAOS_OUT="$(CHAOS_OUT)" CHAOS_BUG="$(CHAOS_BUG)" bash ci/chaos.sh

# Hostile load against a real echo_server on loopback (docs/server.md,
# "Limits and refusals"): one STRESS line per attack.
stress: check-deps $(EX_PROGS) $(BUILD)/bin/mprpc-attack
	@bash ci/stress.sh $(BUILD)

bench: check-deps all
	@if [ -f ci/bench.sh ]; then bash ci/bench.sh; else echo "make bench: not built yet"; fi

install: lib $(BUILD)/bin/mprpc
	install -d $(DESTDIR)$(PREFIX)/include/mprpc $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(BUILD)/bin/mprpc $(DESTDIR)$(PREFIX)/bin/
	install -m 644 include/mprpc/*.h $(DESTDIR)$(PREFIX)/include/mprpc/
	install -m 644 $(BUILD)/libmprpc.a $(DESTDIR)$(PREFIX)/lib/
	install -m 644 $(BUILD)/libmprpc-core.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/libmprpc.so $(DESTDIR)$(PREFIX)/lib/libmprpc.so.$(VERSION)
	ln -sf libmprpc.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libmprpc.so.0
	ln -sf libmprpc.so.0 $(DESTDIR)$(PREFIX)/lib/libmprpc.so
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' ci/mprpc.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/mprpc.pc

clean:
	rm -rf $(BUILD)

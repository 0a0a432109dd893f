# SPDX-License-Identifier: MIT
# rigatoni_store -- build, install, deps, test, bench, demo.
#
#   make            library (static + shared), Lua module
#   make deps       install every package the build and tests need (Debian)
#   make test       C tests (plain, ASan+UBSan, TSan) + busted specs on real Redis (plain
#                   and ASan+UBSan with leak check) + four specs on Valkey + fuzz smoke;
#                   RS_TEST_SERVER=valkey-server runs the specs on Valkey
#   make fuzz       libFuzzer targets in spec/fuzz/, FUZZ_SECONDS each (fuzz-smoke: brief)
#   make chaos      the history checker under faults for CHAOS_SECONDS (spec/c/test_history.c)
#   make chaos-failover   the same through three sentinels, forcing Sentinel failovers
#   make chaos-plant-lie  the checker with a lie planted in its job path: must fail
#   make bench      benchmarks against redis-benchmark on a throwaway server
#   make bench-compare BASE=rev   the sequential and 16-thread figures against rev's build
#   make demo       start a throwaway redis-server, save and list demo tokens
#   make install PREFIX=/usr/local   (make uninstall removes exactly that again)
#   luarocks make   builds and installs through rigatoni_store-<version>-1.rockspec

PREFIX    ?= /usr/local
LIBDIR    ?= $(PREFIX)/lib
INCDIR    ?= $(PREFIX)/include
LUA_CDIR  ?= $(LIBDIR)/lua/5.4
# The pure-Lua modules (the event-loop adapters, lua/rigatoni_store/).
LUA_LDIR  ?= $(DATADIR)/lua/5.4
BINDIR    ?= $(PREFIX)/bin
DATADIR   ?= $(PREFIX)/share
MANDIR    ?= $(DATADIR)/man
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
# The host's bundled scripts; compiled into it as its last place to look
# (a LuaRocks tree keeps them in the rock's folder, not next to bin/).
SCRIPTSDIR ?= $(DATADIR)/rigatoni_store/scripts
# LuaRocks passes these (the rockspec); without them, pkg-config and -shared.
LUA_INCDIR ?=
LUA_LIBDIR ?=
LIBFLAG    ?= -shared
PKGCONFIG ?= pkg-config
BUILD     ?= build

CC      ?= cc
DEPS    := hiredis hiredis_ssl libbson-1.0
LUADEPS := lua5.4
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter
# Warnings are errors in the builds `make test` makes (ours), not in a
# packager's build, where a newer compiler may warn about more.
ifneq ($(filter test test-% fuzz-build,$(MAKECMDGOALS)),)
WERROR  ?= -Werror
endif
WERROR  ?=
CFLAGS  ?= -O2 -g
SAN     ?=
# CPPFLAGS, CFLAGS and LDFLAGS are the user's (dpkg-buildflags exports all three).
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -fPIC $(WARN) $(WERROR) $(CPPFLAGS) $(CFLAGS) $(SAN) \
             $(shell $(PKGCONFIG) --cflags $(DEPS)) -Icore
LUA_CFLAGS = $(if $(LUA_INCDIR),-I$(LUA_INCDIR),$(shell $(PKGCONFIG) --cflags $(LUADEPS)))
LIBS    = $(shell $(PKGCONFIG) --libs $(DEPS)) -lssl -lcrypto -lpthread -lm

CORE_SRC := $(wildcard core/*.c)
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/obj/%.o)
MOD_SRC  := $(filter-out lua/host%.c,$(wildcard lua/*.c))
MOD_OBJ  := $(MOD_SRC:%.c=$(BUILD)/obj/%.o)
HOST_SRC := $(wildcard lua/host*.c)
HOST_OBJ := $(HOST_SRC:%.c=$(BUILD)/obj/%.o)
VERSION  := $(shell sed -n 's/^\#define RS_VERSION "\(.*\)"/\1/p' core/rigatoni_store.h)
CTEST_SRC := $(wildcard spec/c/test_*.c)
CTEST_BIN := $(CTEST_SRC:spec/c/%.c=$(BUILD)/tests/%)

.PHONY: deb all deps bench-deps bench-compare test test-asan test-tsan test-lua-asan fuzz fuzz-build fuzz-smoke bench demo \
        install clean chaos chaos-failover chaos-plant-lie
all: $(BUILD)/librigatoni_store.a $(BUILD)/librigatoni_store.so $(BUILD)/rigatoni_store.so \
     $(BUILD)/rigatoni-store

# Each object depends on the headers it includes, as the compiler lists
# them (-MMD -MP: build/obj/**/*.d, read below), not on every header.
DEPFLAGS = -MMD -MP

# A core file includes the header that declares what it defines (its own,
# or rigatoni_store.h), so a definition that strays from it fails here.
$(BUILD)/obj/core/%.o: core/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Wmissing-prototypes $(DEPFLAGS) -c $< -o $@

$(BUILD)/obj/lua/%.o: lua/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(DEPFLAGS) $(LUA_CFLAGS) -c $< -o $@

-include $(wildcard $(BUILD)/obj/core/*.d $(BUILD)/obj/lua/*.d $(BUILD)/tests/*.d \
                    $(BUILD)/examples/*.d)

$(BUILD)/librigatoni_store.a: $(CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^

# The shared library: the real file carries the full version, SONAME the ABI
# number; the two links are what the loader and the linker look for.
SONAME  := librigatoni_store.so.0
SOREAL  := librigatoni_store.so.$(VERSION)
# -z nodelete: a read-ahead or lease thread may still be returning from
# the library's code when the store's close has returned (it has said it
# is done, it has not left yet); dlclose (Lua's, at lua_close) must not
# unmap that code under it.
NODELETE := -Wl,-z,nodelete
$(BUILD)/$(SOREAL): $(CORE_OBJ)
	$(CC) -shared $(SAN) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LIBS) -Wl,-soname,$(SONAME) $(NODELETE)
$(BUILD)/librigatoni_store.so: $(BUILD)/$(SOREAL)
	ln -sf $(SOREAL) $(BUILD)/$(SONAME)
	ln -sf $(SOREAL) $@

# The Lua module carries the core inside, so `require` needs no LD_LIBRARY_PATH.
$(BUILD)/rigatoni_store.so: $(MOD_OBJ) $(BUILD)/librigatoni_store.a
	$(CC) $(LIBFLAG) $(SAN) $(CFLAGS) $(LDFLAGS) -o $@ $(MOD_OBJ) $(BUILD)/librigatoni_store.a $(LIBS) $(NODELETE)

# The host binary: the module linked in, so scripts need no .so on disk;
# libmicrohttpd serves `serve`'s /metrics (lua/host_http.c).
$(BUILD)/obj/lua/host_http.o: ALL_CFLAGS += $(shell $(PKGCONFIG) --cflags libmicrohttpd)
$(BUILD)/rigatoni-store: $(HOST_OBJ) $(MOD_OBJ) $(BUILD)/librigatoni_store.a
	$(CC) $(SAN) $(CFLAGS) $(LDFLAGS) -o $@ $(HOST_OBJ) $(MOD_OBJ) $(BUILD)/librigatoni_store.a \
	    $(if $(LUA_LIBDIR),-L$(LUA_LIBDIR)) $(shell $(PKGCONFIG) --libs lua5.4 inih libmicrohttpd) $(LIBS)

# The Lua side, what the rockspec builds: the module, the host, the man page.
.PHONY: rock install-lib install-rock uninstall FORCE
rock: $(BUILD)/rigatoni_store.so $(BUILD)/rigatoni-store $(BUILD)/rigatoni-store.1 \
      $(BUILD)/rigatoni-store.bash
all: rock

# SCRIPTSDIR is compiled into host.o; the stamp changes (and host.o is
# rebuilt) only when SCRIPTSDIR does.
$(BUILD)/obj/lua/host.o: $(BUILD)/scriptsdir.stamp
$(BUILD)/obj/lua/host.o: ALL_CFLAGS += -DHOST_SCRIPTS_DIR='"$(SCRIPTSDIR)"'
$(BUILD)/scriptsdir.stamp: FORCE
	@mkdir -p $(@D)
	@echo '$(SCRIPTSDIR)' | cmp -s - $@ || echo '$(SCRIPTSDIR)' >$@

# The bash completion and the man page's option lists are made from the
# declarations the scripts return (scripts/lib/options.lua), by the host
# just built running contrib/gen-docs.lua on this tree's scripts.
SCRIPTS     := $(wildcard scripts/*.lua)
SCRIPTS_LIB := $(wildcard scripts/lib/*.lua)
LUA_MODS    := $(wildcard lua/rigatoni_store/*.lua)
GEN_DOCS = RIGATONI_STORE_CONFIG= RIGATONI_STORE_SCRIPTS="$(CURDIR)/scripts" \
           $(BUILD)/rigatoni-store -q contrib/gen-docs.lua
$(BUILD)/rigatoni-store.1: doc/rigatoni-store.1 core/rigatoni_store.h $(BUILD)/scriptsdir.stamp \
                           $(SCRIPTS) $(SCRIPTS_LIB) contrib/gen-docs.lua $(BUILD)/rigatoni-store
	$(GEN_DOCS) man $< $(SCRIPTS) >$@.tmp
	sed -e 's|^\.I /usr/local/share/rigatoni_store/scripts/$$|.I $(SCRIPTSDIR)/|' $@.tmp >$@
	rm -f $@.tmp
$(BUILD)/rigatoni-store.bash: contrib/bash-completion/rigatoni-store.in $(SCRIPTS) $(SCRIPTS_LIB) \
                              contrib/gen-docs.lua $(BUILD)/rigatoni-store
	$(GEN_DOCS) completion $< $(SCRIPTS) >$@.tmp
	mv $@.tmp $@

# The page in the source tree carries the generated lists too, so that it
# reads whole without a build: this refreshes them after a declaration changed
# (spec/declarations_spec.lua fails until it is run).
.PHONY: doc-options
doc-options: $(BUILD)/rigatoni-store
	$(GEN_DOCS) man doc/rigatoni-store.1 $(SCRIPTS) >$(BUILD)/rigatoni-store.1.src
	mv $(BUILD)/rigatoni-store.1.src doc/rigatoni-store.1

$(BUILD)/tests/%: spec/c/%.c $(BUILD)/librigatoni_store.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(DEPFLAGS) -Ispec/c $< -o $@ $(BUILD)/librigatoni_store.a $(LIBS)

# contrib/epoll_jobs.c: jobs driven from epoll (test_jobs runs it).
EXAMPLES := $(BUILD)/examples/epoll_jobs
all: $(EXAMPLES)
$(BUILD)/examples/%: contrib/%.c $(BUILD)/librigatoni_store.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(DEPFLAGS) $< -o $@ $(BUILD)/librigatoni_store.a $(LIBS)
$(BUILD)/tests/test_jobs: $(BUILD)/examples/epoll_jobs

# The history checker drives the fault proxy of the specs.
$(BUILD)/tests/test_history: $(BUILD)/bin/faultproxy
$(BUILD)/bin/faultproxy: spec/support/faultproxy.c
	@mkdir -p $(@D)
	$(CC) -O2 -g $(WARN) $(WERROR) $< -o $@

# A longer run of the history checker (make test runs it for 12 s).
CHAOS_SECONDS ?= 120
chaos: $(BUILD)/tests/test_history
	CHAOS_SECONDS=$(CHAOS_SECONDS) $(BUILD)/tests/test_history

# The same checker through three sentinels, forcing Sentinel failovers.
chaos-failover: $(BUILD)/tests/test_history
	CHAOS_FAILOVER=1 CHAOS_SECONDS=$(CHAOS_SECONDS) $(BUILD)/tests/test_history

# The checker against a lie planted in its job path (a delete whose reply
# was lost reported "absent"): must report a violation and fail. Not in
# make test.
chaos-plant-lie: $(BUILD)/tests/test_history
	CHAOS_PLANT_JOB_LIE=1 $(BUILD)/tests/test_history

deps:
	sh spec/support/install-deps.sh

# The redis-py and lua-redis baselines of `make bench`.
bench-deps:
	sh spec/support/install-bench-deps.sh

test: all $(CTEST_BIN) test-asan test-tsan test-lua-asan fuzz-build
	FUZZ_SMOKE_SECONDS=$(FUZZ_SMOKE_SECONDS) sh spec/run-tests.sh

# The C tests again under sanitizers, each in its own build tree:
# AddressSanitizer + UndefinedBehaviorSanitizer, and ThreadSanitizer for the
# pool and the 16-thread hammer.
test-asan:
	$(MAKE) WERROR="$(WERROR)" BUILD=build-asan CFLAGS="-O1 -g -fno-omit-frame-pointer" \
	    SAN="-fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all" \
	    $(CTEST_BIN:$(BUILD)/%=build-asan/%)
test-tsan:
	$(MAKE) WERROR="$(WERROR)" BUILD=build-tsan SAN="-fsanitize=thread" CFLAGS="-O1 -g" \
	    build-tsan/tests/test_threads build-tsan/tests/test_pool build-tsan/tests/test_lease \
	    build-tsan/tests/test_pool_exhaust build-tsan/tests/test_metrics \
	    build-tsan/tests/test_config_race build-tsan/tests/test_cluster \
	    build-tsan/tests/test_null_err build-tsan/tests/test_readahead \
	    build-tsan/tests/test_jobs build-tsan/tests/test_jobs_faults build-tsan/tests/test_open_job \
	    build-tsan/tests/test_job_group

# The Lua module under ASan+UBSan, with an ASan-linked interpreter
# (spec/support/asan_lua.c) that spec/run-tests.sh puts first in PATH as
# lua5.4: the busted specs then run against build-asan/rigatoni_store.so,
# leak check included, and redis-server/redis-cli stay uninstrumented.
test-lua-asan:
	$(MAKE) WERROR="$(WERROR)" BUILD=build-asan CFLAGS="-O1 -g -fno-omit-frame-pointer" \
	    SAN="-fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all" \
	    build-asan/rigatoni_store.so build-asan/bin/lua5.4 build-asan/bin/oom_lua

$(BUILD)/bin/lua5.4: spec/support/asan_lua.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(LUA_CFLAGS) $< -o $@ $(shell $(PKGCONFIG) --libs lua5.4)

# Memory errors injected at each allocation of the bindings (spec/bindings_spec.lua).
$(BUILD)/bin/oom_lua: spec/support/oom_lua.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(LUA_CFLAGS) $< -o $@ $(shell $(PKGCONFIG) --libs lua5.4)

# ---- fuzzing: libFuzzer targets (clang) in build-fuzz/fuzz/ ----------------
# `make fuzz` runs each target FUZZ_SECONDS, `make fuzz-smoke` (part of
# `make test`) FUZZ_SMOKE_SECONDS; both replay spec/fuzz/regress/ first.
FUZZ_CC            ?= clang
FUZZ_SECONDS       ?= 300
FUZZ_SMOKE_SECONDS ?= 10
FUZZ_TARGETS := $(patsubst spec/fuzz/fuzz_%.c,%,$(wildcard spec/fuzz/fuzz_*.c))
FUZZ_SAN     := -fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=all

$(BUILD)/fuzz/fuzz_%: spec/fuzz/fuzz_%.c $(MOD_OBJ) $(BUILD)/obj/lua/host_conf.o \
                      $(BUILD)/librigatoni_store.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(LUA_CFLAGS) -Ilua -fsanitize=fuzzer $< -o $@ $(MOD_OBJ) \
	    $(BUILD)/obj/lua/host_conf.o $(BUILD)/librigatoni_store.a \
	    $(shell $(PKGCONFIG) --libs lua5.4 inih) $(LIBS)

fuzz-build:
	$(MAKE) WERROR="$(WERROR)" BUILD=build-fuzz CC=$(FUZZ_CC) CFLAGS="-O1 -g -fno-omit-frame-pointer" \
	    SAN="$(FUZZ_SAN)" $(FUZZ_TARGETS:%=build-fuzz/fuzz/fuzz_%)
fuzz: fuzz-build
	sh spec/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)
fuzz-smoke: fuzz-build
	sh spec/fuzz/run.sh $(FUZZ_SMOKE_SECONDS) $(FUZZ_TARGETS)

bench: all
	sh spec/bench/run.sh

# This tree's sequential Lua and 16-thread figures against BASE's, built in a
# temporary git worktree (spec/bench/compare_builds.sh).
BASE ?= 2ad9da6
bench-compare: all
	sh spec/bench/compare_builds.sh $(BASE)

# The Debian packages (debian/), built from a clean copy and checked with
# lintian, hardening-check and a scratch root (spec/support/deb-check.sh).
deb:
	sh spec/support/deb-check.sh

demo: deps all
	sh spec/support/demo.sh

# install = install-lib (C library, header, pkg-config) + install-rock (the
# module, the host and its scripts, the man page, the bash completion: what
# the rockspec installs, with LUA_CDIR and BINDIR set to the rock's folders).
# uninstall removes these same files, and the scripts' folder.
LIB_FILES   := $(LIBDIR)/librigatoni_store.a $(LIBDIR)/$(SOREAL) $(LIBDIR)/$(SONAME) \
               $(LIBDIR)/librigatoni_store.so $(INCDIR)/rigatoni_store.h \
               $(LIBDIR)/pkgconfig/rigatoni_store.pc
LUA_FILES   := $(LUA_CDIR)/rigatoni_store.so $(BINDIR)/rigatoni-store \
               $(LUA_MODS:lua/%=$(LUA_LDIR)/%) \
               $(MANDIR)/man1/rigatoni-store.1 $(BASHCOMPDIR)/rigatoni-store \
               $(SCRIPTS:scripts/%=$(SCRIPTSDIR)/%) $(SCRIPTS_LIB:scripts/%=$(SCRIPTSDIR)/%)

install: install-lib install-rock

install-lib: $(BUILD)/librigatoni_store.a $(BUILD)/librigatoni_store.so
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR) $(DESTDIR)$(LIBDIR)/pkgconfig
	install -m 644 $(BUILD)/librigatoni_store.a $(DESTDIR)$(LIBDIR)/
	install -m 644 $(BUILD)/$(SOREAL) $(DESTDIR)$(LIBDIR)/
	ln -sf $(SOREAL) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/librigatoni_store.so
	install -m 644 core/rigatoni_store.h $(DESTDIR)$(INCDIR)/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCDIR@|$(INCDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|' \
	    core/rigatoni_store.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/rigatoni_store.pc

install-rock: rock
	install -d $(DESTDIR)$(LUA_CDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(SCRIPTSDIR)/lib \
	    $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(LUA_LDIR)/rigatoni_store
	install -m 755 $(BUILD)/rigatoni_store.so $(DESTDIR)$(LUA_CDIR)/rigatoni_store.so
	install -m 644 $(LUA_MODS) $(DESTDIR)$(LUA_LDIR)/rigatoni_store/
	install -m 755 $(BUILD)/rigatoni-store $(DESTDIR)$(BINDIR)/
	install -m 644 $(SCRIPTS) $(DESTDIR)$(SCRIPTSDIR)/
	install -m 644 $(SCRIPTS_LIB) $(DESTDIR)$(SCRIPTSDIR)/lib/
	install -m 644 $(BUILD)/rigatoni-store.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 $(BUILD)/rigatoni-store.bash $(DESTDIR)$(BASHCOMPDIR)/rigatoni-store

uninstall:
	rm -f $(addprefix $(DESTDIR),$(LIB_FILES) $(LUA_FILES))
	rmdir $(DESTDIR)$(SCRIPTSDIR)/lib $(DESTDIR)$(SCRIPTSDIR) $(DESTDIR)$(DATADIR)/rigatoni_store \
	    $(DESTDIR)$(LUA_LDIR)/rigatoni_store \
	    2>/dev/null || true

clean:
	rm -rf build build-*

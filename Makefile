# rigatoni_store -- build, install, deps, test, bench, demo.
#
#   make            library (static + shared), Lua module
#   make deps       install every package the build and tests need (Debian)
#   make test       C tests (plain, ASan+UBSan, TSan) + busted specs on real Redis (plain
#                   and ASan+UBSan with leak check) + four specs on Valkey + fuzz smoke;
#                   RS_TEST_SERVER=valkey-server runs the specs on Valkey
#   make fuzz       libFuzzer targets in spec/fuzz/, FUZZ_SECONDS each (fuzz-smoke: brief)
#   make bench      benchmarks against redis-benchmark on a throwaway server
#   make demo       start a throwaway redis-server, save and list demo tokens
#   make install PREFIX=/usr/local

PREFIX    ?= /usr/local
LIBDIR    ?= $(PREFIX)/lib
INCDIR    ?= $(PREFIX)/include
LUA_CDIR  ?= $(LIBDIR)/lua/5.4
PKGCONFIG ?= pkg-config
BUILD     ?= build

CC      ?= cc
DEPS    := hiredis hiredis_ssl libbson-1.0
LUADEPS := lua5.4
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
CFLAGS  ?= -O2 -g
SAN     ?=
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -fPIC $(WARN) $(CFLAGS) $(SAN) \
             $(shell $(PKGCONFIG) --cflags $(DEPS)) -Icore
LUA_CFLAGS = $(shell $(PKGCONFIG) --cflags $(LUADEPS))
LIBS    = $(shell $(PKGCONFIG) --libs $(DEPS)) -lssl -lcrypto -lpthread -lm

CORE_SRC := $(wildcard core/*.c)
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/obj/%.o)
MOD_SRC  := $(filter-out lua/host%.c,$(wildcard lua/*.c))
MOD_OBJ  := $(MOD_SRC:%.c=$(BUILD)/obj/%.o)
HOST_SRC := $(wildcard lua/host*.c)
HOST_OBJ := $(HOST_SRC:%.c=$(BUILD)/obj/%.o)
CTEST_SRC := $(wildcard spec/c/test_*.c)
CTEST_BIN := $(CTEST_SRC:spec/c/%.c=$(BUILD)/tests/%)

.PHONY: all deps test test-asan test-tsan test-lua-asan fuzz fuzz-build fuzz-smoke bench demo \
        install clean
all: $(BUILD)/librigatoni_store.a $(BUILD)/librigatoni_store.so $(BUILD)/rigatoni_store.so \
     $(BUILD)/rigatoni-store

$(BUILD)/obj/core/%.o: core/%.c core/*.h
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/obj/lua/%.o: lua/%.c lua/*.h core/rigatoni_store.h
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(LUA_CFLAGS) -c $< -o $@

$(BUILD)/librigatoni_store.a: $(CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/librigatoni_store.so: $(CORE_OBJ)
	$(CC) -shared $(SAN) -o $@ $^ $(LIBS) -Wl,-soname,librigatoni_store.so.0

# The Lua module carries the core inside, so `require` needs no LD_LIBRARY_PATH.
$(BUILD)/rigatoni_store.so: $(MOD_OBJ) $(BUILD)/librigatoni_store.a
	$(CC) -shared $(SAN) -o $@ $(MOD_OBJ) $(BUILD)/librigatoni_store.a $(LIBS)

# The host binary: the module linked in, so scripts need no .so on disk.
$(BUILD)/rigatoni-store: $(HOST_OBJ) $(MOD_OBJ) $(BUILD)/librigatoni_store.a
	$(CC) $(SAN) -o $@ $(HOST_OBJ) $(MOD_OBJ) $(BUILD)/librigatoni_store.a \
	    $(shell $(PKGCONFIG) --libs lua5.4 inih) $(LIBS)

$(BUILD)/tests/%: spec/c/%.c spec/c/*.h $(BUILD)/librigatoni_store.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Ispec/c $< -o $@ $(BUILD)/librigatoni_store.a $(LIBS)

deps:
	sh spec/support/install-deps.sh

test: all $(CTEST_BIN) test-asan test-tsan test-lua-asan fuzz-build
	FUZZ_SMOKE_SECONDS=$(FUZZ_SMOKE_SECONDS) sh spec/run-tests.sh

# The C tests again under sanitizers, each in its own build tree:
# AddressSanitizer + UndefinedBehaviorSanitizer, and ThreadSanitizer for the
# pool and the 16-thread hammer.
test-asan:
	$(MAKE) BUILD=build-asan CFLAGS="-O1 -g -fno-omit-frame-pointer" \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=all" \
	    $(CTEST_BIN:$(BUILD)/%=build-asan/%)
test-tsan:
	$(MAKE) BUILD=build-tsan SAN="-fsanitize=thread" CFLAGS="-O1 -g" \
	    build-tsan/tests/test_threads build-tsan/tests/test_pool build-tsan/tests/test_lease \
	    build-tsan/tests/test_pool_exhaust build-tsan/tests/test_metrics \
	    build-tsan/tests/test_cluster

# The Lua module under ASan+UBSan, with an ASan-linked interpreter
# (spec/support/asan_lua.c) that spec/run-tests.sh puts first in PATH as
# lua5.4: the busted specs then run against build-asan/rigatoni_store.so,
# leak check included, and redis-server/redis-cli stay uninstrumented.
test-lua-asan:
	$(MAKE) BUILD=build-asan CFLAGS="-O1 -g -fno-omit-frame-pointer" \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=all" \
	    build-asan/rigatoni_store.so build-asan/bin/lua5.4

$(BUILD)/bin/lua5.4: spec/support/asan_lua.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(LUA_CFLAGS) $< -o $@ $(shell $(PKGCONFIG) --libs lua5.4)

# ---- fuzzing: libFuzzer targets (clang) in build-fuzz/fuzz/ ----------------
# `make fuzz` runs each target FUZZ_SECONDS, `make fuzz-smoke` (part of
# `make test`) FUZZ_SMOKE_SECONDS; both replay spec/fuzz/regress/ first.
FUZZ_CC            ?= clang
FUZZ_SECONDS       ?= 300
FUZZ_SMOKE_SECONDS ?= 15
FUZZ_TARGETS := $(patsubst spec/fuzz/fuzz_%.c,%,$(wildcard spec/fuzz/fuzz_*.c))
FUZZ_SAN     := -fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=all

$(BUILD)/fuzz/fuzz_%: spec/fuzz/fuzz_%.c $(MOD_OBJ) $(BUILD)/obj/lua/host_conf.o \
                      $(BUILD)/librigatoni_store.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(LUA_CFLAGS) -Ilua -fsanitize=fuzzer $< -o $@ $(MOD_OBJ) \
	    $(BUILD)/obj/lua/host_conf.o $(BUILD)/librigatoni_store.a \
	    $(shell $(PKGCONFIG) --libs lua5.4 inih) $(LIBS)

fuzz-build:
	$(MAKE) BUILD=build-fuzz CC=$(FUZZ_CC) CFLAGS="-O1 -g -fno-omit-frame-pointer" \
	    SAN="$(FUZZ_SAN)" $(FUZZ_TARGETS:%=build-fuzz/fuzz/fuzz_%)
fuzz: fuzz-build
	sh spec/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)
fuzz-smoke: fuzz-build
	sh spec/fuzz/run.sh $(FUZZ_SMOKE_SECONDS) $(FUZZ_TARGETS)

bench: all
	sh spec/bench/run.sh

demo: deps all
	sh spec/support/demo.sh

install: all
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR) $(DESTDIR)$(LUA_CDIR) $(DESTDIR)$(LIBDIR)/pkgconfig
	install -m 644 $(BUILD)/librigatoni_store.a $(DESTDIR)$(LIBDIR)/
	install -m 755 $(BUILD)/librigatoni_store.so $(DESTDIR)$(LIBDIR)/librigatoni_store.so.0
	ln -sf librigatoni_store.so.0 $(DESTDIR)$(LIBDIR)/librigatoni_store.so
	install -m 644 core/rigatoni_store.h $(DESTDIR)$(INCDIR)/
	install -m 755 $(BUILD)/rigatoni_store.so $(DESTDIR)$(LUA_CDIR)/rigatoni_store.so
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/rigatoni_store/scripts/lib
	install -m 755 $(BUILD)/rigatoni-store $(DESTDIR)$(PREFIX)/bin/
	install -m 644 scripts/*.lua $(DESTDIR)$(PREFIX)/share/rigatoni_store/scripts/
	install -m 644 scripts/lib/*.lua $(DESTDIR)$(PREFIX)/share/rigatoni_store/scripts/lib/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCDIR@|$(INCDIR)|' \
	    -e 's|@VERSION@|$(shell sed -n 's/^#define RS_VERSION "\(.*\)"/\1/p' core/rigatoni_store.h)|' \
	    core/rigatoni_store.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/rigatoni_store.pc

clean:
	rm -rf build build-*

# dirtytrack: `make demo` runs the demonstration, `make check` every test suite.
# Both install missing Debian packages first (when run as root).

BUILD      ?= build
BUILD_TSAN ?= build-tsan
BUILD_FUZZ ?= build-fuzz
BUILD_REL  ?= build-release
MESON_TEST  = meson test --print-errorlogs --num-processes 2

.PHONY: all deps build demo check check-asan check-tsan check-fuzz bench format clean

all: build

deps:
	@./scripts/install-deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) -Db_sanitize=address,undefined -Db_lundef=false

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

$(BUILD_REL)/build.ninja:
	meson setup $(BUILD_REL) --buildtype=release -Dtests=false

demo: deps $(BUILD_REL)/build.ninja
	ninja -C $(BUILD_REL)
	./$(BUILD_REL)/tools/dirtytrack demo

# gcc with ASan+UBSan: every suite. clang with TSan: the stress suite. clang libFuzzer: fuzz.
check: deps check-asan check-tsan check-fuzz
	@echo "make check: all suites passed"

check-asan: build
	$(MESON_TEST) -C $(BUILD)

$(BUILD_TSAN)/build.ninja:
	CC=clang meson setup $(BUILD_TSAN) -Db_sanitize=thread -Db_lundef=false -Dtsan=true

check-tsan: deps $(BUILD_TSAN)/build.ninja
	ninja -C $(BUILD_TSAN)
	$(MESON_TEST) -C $(BUILD_TSAN) --suite stress

$(BUILD_FUZZ)/build.ninja:
	CC=clang meson setup $(BUILD_FUZZ) -Dfuzz=true -Dtests=false -Db_lundef=false

check-fuzz: deps $(BUILD_FUZZ)/build.ninja
	ninja -C $(BUILD_FUZZ)
	$(MESON_TEST) -C $(BUILD_FUZZ) --suite fuzz

bench: deps $(BUILD_REL)/build.ninja
	ninja -C $(BUILD_REL)
	./$(BUILD_REL)/bench/bench_report
	./$(BUILD_REL)/bench/bench_mark
	./$(BUILD_REL)/bench/bench_track --no-set
	./$(BUILD_REL)/bench/bench_migrate --no-sweep
	./$(BUILD_REL)/bench/migration/policy_sim
	@if [ "$$(id -u)" = 0 ]; then ./bench/migration/sweep.sh --small; \
	else echo "make bench: the migration sweep over network namespaces needs root: skipped"; fi

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(BUILD_TSAN) $(BUILD_FUZZ) $(BUILD_REL)

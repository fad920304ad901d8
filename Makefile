# Builds the Koofr connectors for Plakar as a Plakar package.
#
# `make` (what `plakar pkg build` runs, as `make -C <dir>`, adding EXT=.exe on Windows) builds
# the three executables named in manifest.yaml in release mode and copies them next to it.
# Then `make package` runs `plakar pkg create`, and `make install` adds the result to plakar.
# `cargo xtask package` does the same build and stages a clean folder under target/package/.
#
# That package is for plakar v1.1.x. For plakar v1.0.x (protocol v1), `make package-1.0` stages
# target/package/koofr_$(VERSION)_api-v1.0.0/ with `cargo xtask package --api v1.0.0` and runs
# plakar 1.0's `pkg create` there; `make install-1.0` adds it (PLAKAR=… names your plakar 1.0).

CARGO ?= cargo
CARGO_FLAGS ?= --locked
PLAKAR ?= plakar
# plakar passes EXT=.exe on Windows; cargo names Windows executables *.exe itself.
EXT ?=
# The package version: the workspace version with a leading `v` unless given (VERSION=v1.2.3).
VERSION ?= v$(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
PACKAGE_NAME := koofr
EXECUTABLES := koofr-importer koofr-exporter koofr-storage
STAGE_1_0 := $(TARGET_DIR)/package/$(PACKAGE_NAME)_$(VERSION)_api-v1.0.0

.PHONY: build package install package-1.0 install-1.0 uninstall test clean

build:
	$(CARGO) build --release $(CARGO_FLAGS) $(addprefix --bin ,$(EXECUTABLES))
	for exe in $(EXECUTABLES); do \
		cp "$(TARGET_DIR)/release/$$exe$(EXT)" "./$$exe$(EXT)" && chmod 755 "./$$exe$(EXT)" || exit 1; \
	done

package: build
	$(PLAKAR) pkg create ./manifest.yaml $(VERSION)

install:
	$(PLAKAR) pkg add ./$(PACKAGE_NAME)_$(VERSION)_*.ptar

package-1.0:
	$(CARGO) xtask package --api v1.0.0 --version $(VERSION)
	cd "$(STAGE_1_0)" && $(PLAKAR) pkg create ./manifest.yaml

install-1.0:
	cd "$(STAGE_1_0)" && $(PLAKAR) pkg add ./$(PACKAGE_NAME)_$(VERSION)_*.ptar

uninstall:
	$(PLAKAR) pkg rm $(PACKAGE_NAME)

test:
	$(CARGO) test --workspace $(CARGO_FLAGS)

clean:
	rm -f $(addsuffix $(EXT),$(addprefix ./,$(EXECUTABLES))) ./$(PACKAGE_NAME)_*.ptar

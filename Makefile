# Builds the Koofr connectors for Plakar as a Plakar package.
#
# `make` (what `plakar pkg build` runs, as `make -C <dir>`, adding EXT=.exe on Windows) builds
# the three executables named in manifest.yaml in release mode and copies them next to it.
# Then `make package` runs `plakar pkg create`, and `make install` adds the result to plakar.
# `cargo xtask package` does the same build and stages a clean folder under target/package/.

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

.PHONY: build package install uninstall test clean

build:
	$(CARGO) build --release $(CARGO_FLAGS) $(addprefix --bin ,$(EXECUTABLES))
	for exe in $(EXECUTABLES); do \
		cp "$(TARGET_DIR)/release/$$exe$(EXT)" "./$$exe$(EXT)" && chmod 755 "./$$exe$(EXT)" || exit 1; \
	done

package: build
	$(PLAKAR) pkg create ./manifest.yaml $(VERSION)

install:
	$(PLAKAR) pkg add ./$(PACKAGE_NAME)_$(VERSION)_*.ptar

uninstall:
	$(PLAKAR) pkg rm $(PACKAGE_NAME)

test:
	$(CARGO) test --workspace $(CARGO_FLAGS)

clean:
	rm -f $(addsuffix $(EXT),$(addprefix ./,$(EXECUTABLES))) ./$(PACKAGE_NAME)_*.ptar

# Build and install zcp with its man page and shell completions.
#
#   make                      cargo build --release --locked
#   make install              into /usr/local (PREFIX=..., DESTDIR=... for packaging)
#   make uninstall
#
# `cargo install --locked --path .` installs the binary alone.

PREFIX ?= /usr/local
DESTDIR ?=
CARGO ?= cargo

# cargo builds into $CARGO_TARGET_DIR when it is set.
BIN := $(or $(CARGO_TARGET_DIR),target)/release/zcp
BINDIR := $(DESTDIR)$(PREFIX)/bin
MANDIR := $(DESTDIR)$(PREFIX)/share/man/man1
BASHDIR := $(DESTDIR)$(PREFIX)/share/bash-completion/completions
ZSHDIR := $(DESTDIR)$(PREFIX)/share/zsh/site-functions
FISHDIR := $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d

.PHONY: all install uninstall

all:
	$(CARGO) build --release --locked

install: all
	install -Dm755 $(BIN) $(BINDIR)/zcp
	install -Dm644 man/zcp.1 $(MANDIR)/zcp.1
	install -Dm644 completions/zcp.bash $(BASHDIR)/zcp
	install -Dm644 completions/_zcp $(ZSHDIR)/_zcp
	install -Dm644 completions/zcp.fish $(FISHDIR)/zcp.fish

uninstall:
	rm -f $(BINDIR)/zcp $(MANDIR)/zcp.1 $(BASHDIR)/zcp $(ZSHDIR)/_zcp $(FISHDIR)/zcp.fish

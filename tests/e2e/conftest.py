"""End-to-end: the real SDK, signed, against the emulator; the function on a real ledger. The
fixtures (`emu`, `wired`) live in tests/conftest.py."""

"""Domain: plain dataclasses and enums for loopml's objects; no I/O."""

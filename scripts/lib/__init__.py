"""The library the stack's commands share (scripts/*.py): no command imports another, each imports these."""

"""The kernel tracer: a BPF program, its loader, and its records as strace lines."""

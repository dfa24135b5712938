"""Portable C99 int8 kernels and a host harness: arrives with the C firmware export issue."""

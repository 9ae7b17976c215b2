"""Verifiers (unit tests, math checks, judges, reward models): see the verifiers issue."""

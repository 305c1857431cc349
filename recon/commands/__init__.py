"""Implementations of the `recon` subcommands (parsing lives in recon.cli)."""

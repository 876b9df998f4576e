"""The `secbot` command line: the sub-commands, terminal chat and the offline demo."""

"""Promotion through git: the repository layout Argo CD syncs each environment from (`scaffold`)."""

"""Promotion through git: the repository layout Argo CD syncs each environment from (`scaffold`),
the production record an environment commits for the next (`record`), and the git it is committed
with (`repository`)."""

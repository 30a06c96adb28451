"""Versioned targets: every write kept as a version, "latest" resolved from the committed
ones, each version traced to the Prefect run that wrote it (``docs/versions.md``)."""

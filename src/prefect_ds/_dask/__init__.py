"""Submitting Prefect task runs to Dask without rebuilding Prefect's state for each one.

``submit.py`` runs in the flow's process, ``worker.py`` on the Dask workers, and
``internals.py`` names the private Prefect parts both rely on.
"""

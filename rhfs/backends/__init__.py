"""The systems behind the tree: one small Protocol (:mod:`rhfs.backends.base`) and its
implementations, the only modules that import fsspec and its backends.

- :mod:`~rhfs.backends.local` serves ``here/``, :mod:`~rhfs.backends.cluster` an SSH cluster,
  :mod:`~rhfs.backends.store` an object store (with the provider modules ``s3``, ``gcs``,
  ``azure`` and ``generic``, picked by the one protocol map in :mod:`~rhfs.backends.providers`),
  :mod:`~rhfs.backends.memory` the unit tests;
- :mod:`~rhfs.backends.guard` wraps each one with time limits and health tracking.
"""

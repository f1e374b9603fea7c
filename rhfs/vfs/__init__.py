"""The VFS core: the whole filesystem in rhfs's own types, testable without the kernel.

:class:`rhfs.vfs.core.Vfs` serves FUSE-shaped operations over the mount table
(:mod:`~rhfs.tree`), with attribute and listing caches (:mod:`~rhfs.vfs.cache`), open
handles and write spools (:mod:`~rhfs.vfs.handles`, :mod:`~rhfs.vfs.open_files`) and read-ahead
(:mod:`~rhfs.vfs.readahead`). Nothing here imports mfusepy; the faces sit above it.
"""

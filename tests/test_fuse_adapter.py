"""The FUSE adapter's own answers and a missing FUSE, without a mount.

Needs libfuse3 installed (as every mount does); skipped without it.
"""

from __future__ import annotations

import argparse
import errno

import pytest

from rhfs import cli
from rhfs.errors import FuseUnavailable

try:
    from rhfs import fuse_adapter
except FuseUnavailable as e:
    pytest.skip(str(e), allow_module_level=True)


@pytest.mark.parametrize(
    ("name", "code"),
    [
        (b"security.capability", errno.EOPNOTSUPP),
        (b"system.posix_acl_access", errno.EOPNOTSUPP),
        (b"trusted.overlay.opaque", errno.ENODATA),
        (b"user.other", errno.ENODATA),
    ],
)
def test_xattr_names_rhfs_never_has_are_answered_by_the_adapter(name: bytes, code: int) -> None:
    fuse = object.__new__(fuse_adapter.RhfsFUSE)  # no mount: these names never reach the operations
    assert fuse.getxattr(b"/any", name, None, 0) == -code


def test_fuse_unavailable_is_one_line_with_the_fix_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    message = "libfuse.so.2 is libfuse 2.9; install it with: sudo apt-get install -y fuse3"

    def handler(args: argparse.Namespace) -> int:
        raise FuseUnavailable(message)

    assert cli._run(handler, argparse.Namespace()) == cli.EXIT_FAILED
    assert capsys.readouterr().err == f"rhfs: {message}\n"

"""Each backend's declaration, checked against its behaviour on its real server.

A backend declares its :class:`~rhfs.backends.base.Traits` and its
:class:`~rhfs.backends.base.Abilities` once; the VFS and the copy routes act on those
declarations alone. So each trait is tested both ways here (what it promises holds
where it is declared, and its opposite holds where it is not), and each ability a
backend declares is called and its effect seen through the Backend protocol.
Everything runs through :class:`~rhfs.backends.guard.Guarded`, as in the mount.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shlex
import stat
from pathlib import Path

import pytest
from backend_fixtures import BACKENDS, ENAMETOOLONG, ENOENT, PATTERN, REMOTE, Place, errno_of, make_place

from rhfs.backends.base import PATH_MAX, Abilities, Traits
from rhfs.backends.guard import Guarded

pytestmark = pytest.mark.servers

ESTALE = errno.ESTALE


@pytest.fixture(params=BACKENDS)
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    return make_place(request.param, True, tmp_path, request)


def traits(place: Place) -> Traits:
    return place.backend.traits


def abilities(place: Place) -> Abilities:
    return place.backend.abilities


def test_every_backend_declares_its_traits_and_abilities(place: Place) -> None:
    assert isinstance(traits(place), Traits) and traits(place).family
    assert isinstance(abilities(place), Abilities)
    assert traits(place).writable and traits(place).holds_bytes  # every system (views are not here)


def test_the_guard_offers_the_same_abilities_and_traits(place: Place) -> None:
    guard = place.backend
    assert isinstance(guard, Guarded)
    offered = {f.name for f in dataclasses.fields(Abilities) if getattr(guard.abilities, f.name) is not None}
    declared = {f.name for f in dataclasses.fields(Abilities) if getattr(guard.inner.abilities, f.name)}
    assert offered == declared
    assert guard.traits == guard.inner.traits


def test_remote_is_declared_by_every_system_reached_through_a_client(place: Place) -> None:
    assert traits(place).remote == (place.name not in ("here", "memory"))  # any fsspec store is remote
    assert traits(place).remote or place.name not in REMOTE
    if traits(place).remote:
        assert abilities(place).local_path is None


def test_an_open_file_outlives_its_name_where_declared(place: Place) -> None:
    path = place.put("f", PATTERN)
    reader = place.backend.open_reader(path, place.backend.stat(path))
    try:
        reader.read(0, 0)  # opens the file on the system, as the VFS pins a reader before unlink
        place.backend.remove(path)
        if traits(place).open_survives_unlink:
            assert reader.read(0, len(PATTERN)) == PATTERN
        else:
            assert errno_of(reader.read, 0, len(PATTERN)) in (ENOENT, ESTALE)
    finally:
        reader.close()


def test_a_reader_is_tied_to_its_version_where_objects_are_versioned(place: Place) -> None:
    path = place.put("f", b"one!")
    reader = place.backend.open_reader(path, place.backend.stat(path))
    try:
        place.put("f", b"two!")  # a new version of the same size
        if traits(place).versioned_objects:
            assert errno_of(reader.read, 0, 4) == ESTALE
        else:
            assert reader.read(0, 4) in (b"one!", b"two!")  # replaced in place: no version to miss
    finally:
        reader.close()


def test_directories_are_implied_by_names_where_declared(place: Place) -> None:
    if traits(place).implicit_directories:
        place.put("a/b/f", b"x")
        assert place.stat("a/b").is_dir and place.names("a") == ["b"]
    else:
        assert errno_of(place.put, "a/b/f", b"x") == ENOENT


# -- abilities ---------------------------------------------------------------------------------
def test_local_path_is_the_file_on_this_host(place: Place) -> None:
    local_path = abilities(place).local_path
    if local_path is None:
        pytest.skip(f"{place.name} has no local paths")
    path = place.put("f", PATTERN)
    assert Path(local_path(path)).read_bytes() == PATTERN


def test_run_and_remote_path_reach_the_file_on_the_system(place: Place) -> None:
    run, remote_path = abilities(place).run, abilities(place).remote_path
    if run is None:
        pytest.skip(f"{place.name} runs no commands")
    assert remote_path is not None  # a system that runs commands names its files for them
    path = place.put("f", b"seen there\n")
    code, out, _ = run(f"cat -- {shlex.quote(remote_path(path))}")
    assert (code, out) == (0, "seen there\n")
    assert remote_path("") == remote_path(path).rsplit("/", 2)[0]


def test_symlink_makes_a_link(place: Place) -> None:
    symlink = abilities(place).symlink
    if symlink is None:
        pytest.skip(f"{place.name} has no symbolic links")
    symlink("target-elsewhere", place.p("link"))
    assert place.stat("link").link_target == "target-elsewhere"


def test_set_mode_and_set_times_are_kept(place: Place) -> None:
    set_mode, set_times = abilities(place).set_mode, abilities(place).set_times
    if set_mode is None and set_times is None:
        pytest.skip(f"{place.name} keeps no modes or times")
    assert set_mode is not None and set_times is not None
    path = place.put("f", b"x")
    set_mode(path, 0o640)
    assert (place.stat("f").mode or 0) & 0o777 == 0o640
    set_times(path, None, 1_500_000_000 * 10**9)
    assert int(place.stat("f").mtime) == 1_500_000_000


def test_set_owner_is_kept_and_never_follows_a_link(place: Place) -> None:
    set_owner = abilities(place).set_owner
    if set_owner is None:
        assert place.stat(place.put("f", b"x").rsplit("/", 1)[-1]).uid is None  # no owner kept at all
        pytest.skip(f"{place.name} keeps no owners")
    path = place.put("f", b"x")
    set_owner(path, 1234, 4321)
    assert (place.stat("f").uid, place.stat("f").gid) == (1234, 4321)
    set_owner(path, None, 99)  # None leaves the uid as it is
    assert (place.stat("f").uid, place.stat("f").gid) == (1234, 99)
    symlink = abilities(place).symlink
    assert symlink is not None  # every system that keeps owners has links
    symlink("f", place.p("link"))
    set_owner(place.p("link"), 777, 777)
    assert (place.stat("link").uid, place.stat("f").uid) == (777, 1234)


def test_hard_link_gives_a_file_a_second_name(place: Place) -> None:
    hard_link = abilities(place).hard_link
    if hard_link is None:
        pytest.skip(f"{place.name} has no hard links")
    path = place.put("f", PATTERN)
    hard_link(path, place.p("g"))
    assert place.read("g") == PATTERN
    place.backend.remove(path)
    assert place.read("g") == PATTERN  # the file lives on under its other name
    assert errno_of(hard_link, place.p("missing"), place.p("h")) == ENOENT
    assert errno_of(hard_link, place.p("g"), place.p("g")) == errno.EEXIST


def test_make_node_makes_fifos_and_sockets(place: Place) -> None:
    make_node = abilities(place).make_node
    if make_node is None:
        pytest.skip(f"{place.name} holds no special files")
    make_node(place.p("fifo"), stat.S_IFIFO | 0o640, 0)
    make_node(place.p("sock"), stat.S_IFSOCK | 0o600, 0)
    entries = place.entries()
    assert entries["fifo"].node_type == stat.S_IFIFO and not entries["fifo"].is_dir
    assert entries["sock"].node_type == stat.S_IFSOCK
    assert place.stat("fifo").node_type == stat.S_IFIFO


def test_check_path_refuses_what_the_system_cannot_take(place: Place) -> None:
    check_path = abilities(place).check_path
    if check_path is None:
        pytest.skip(f"{place.name} takes any path")
    check_path(place.p("f"))
    too_long = "/".join([place.p("d" * 200)] * (PATH_MAX // 200 + 1))
    assert errno_of(check_path, too_long) == ENAMETOOLONG


def test_remove_upload_leftovers_answers_how_many(place: Place) -> None:
    leftovers = abilities(place).remove_upload_leftovers
    if leftovers is None:
        pytest.skip(f"{place.name} leaves no temporary siblings")
    path = place.put("f", b"x")
    assert leftovers(path) == 0
    assert place.read("f") == b"x"


def test_ssh_endpoint_names_the_cluster_that_runs_commands(place: Place) -> None:
    ssh = abilities(place).ssh
    if ssh is None:
        pytest.skip(f"{place.name} is not reached over ssh")
    assert abilities(place).run is not None
    assert ssh.system == place.backend.system and ssh.host and ssh.port > 0
    assert ssh.known_hosts == "" or os.path.exists(ssh.known_hosts)


def test_session_runs_copy_jobs_on_the_system(place: Place) -> None:
    session, remote_path = abilities(place).session, abilities(place).remote_path
    if session is None:
        pytest.skip(f"{place.name} keeps no session")
    assert remote_path is not None and abilities(place).run is not None  # a cluster's
    path = place.put("f", PATTERN)
    session.copy(remote_path(path), remote_path(place.p("g")), len(PATTERN), timeout=30)
    assert place.read("g") == PATTERN
    run = abilities(place).run
    assert run is not None
    code, out, _ = run(f"ls -A -- {shlex.quote(remote_path(place.root))}")
    assert (code, sorted(out.split())) == (0, ["f", "g"])  # no temporary sibling left

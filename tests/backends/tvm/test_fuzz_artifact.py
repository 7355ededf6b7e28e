"""Fuzz `.sccpkg` loading and a loaded model's inputs.

One small artifact is built per module (TVM builds are slow); every example mutates a copy
of its bytes or its members. Each case either loads and computes exactly what the original
computes (a harmless change, e.g. an extra member) or raises ArtifactError / InputError with
one line; never another exception, never a file written outside the loader's own temp dir.
Seeded (`derandomize=True`); `SPARSECC_FUZZ_SCALE=20` runs 20x the examples (tests/fuzzing.py).
"""

from __future__ import annotations

import contextlib
import io
import json
import struct
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sparsecc
from sparsecc.backends.tvm.package import MANIFEST, WEIGHTS, manifest_digest
from sparsecc.errors import ArtifactError, InputError, SparseccError
from sparsecc.tools import cli
from tests.fuzzing import fuzz, one_line, outcome

pytest.importorskip("tvm")


@pytest.fixture(scope="module")
def members(saved):
    with zipfile.ZipFile(saved[0]) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


REFUSALS = {  # a phrase of each ArtifactError -> its label in the statistics
    "not a valid .sccpkg": "not a zip / damaged member",
    "does not match the manifest": "library digest",
    "does not match its own sha256": "manifest digest",
    "uncompressed": "declared size over the limit",
    "bytes, the manifest says": "size differs from the manifest",
    "format version": "format version",
    "it is not a complete .sccpkg": "member missing",
    "not JSON": "manifest not JSON",
    "not a JSON object": "manifest not an object",
    "cannot read": "manifest field types",
    "is not a table": "manifest field types",
    "does not list": "manifest field types",
    "encrypted or with compression": "compression method / flags",
    "built for": "other architecture",
    "library this TVM cannot load": "library not loadable",
}


def check_load(path: Path, saved, edited_manifest: bool = False) -> str:
    """'ok' when `path` loads and matches the original bit for bit, else the ArtifactError's line.

    `edited_manifest`: the manifest was changed and its digest recomputed (what a hand edit or a
    buggy writer leaves); its declared inputs may then refuse the original input (InputError)."""
    _, x, expected = saved
    before = set(Path(tempfile.gettempdir()).glob("sparsecc-load-*"))
    try:
        model = sparsecc.load(path)
    except ArtifactError as error:
        message = one_line(str(error))
        outcome("refused: " + next((v for k, v in REFUSALS.items() if k in message), "other"))
        return message
    finally:  # the loader cleans its temp dir up, on success and on failure
        assert set(Path(tempfile.gettempdir()).glob("sparsecc-load-*")) == before
    try:
        result = model(x)
    except InputError as error:
        assert edited_manifest, error
        outcome("loaded; the edited manifest's input spec refuses the original input")
        return one_line(str(error))
    np.testing.assert_array_equal(result, expected)
    outcome("loaded and ran, output identical")
    return "ok"


def others(members: dict) -> list[tuple[str, bytes]]:
    """The package's members but the manifest: the library and the weights."""
    return [(name, data) for name, data in members.items() if name != MANIFEST]


def zip_of(path: Path, entries: list[tuple[str, bytes]], compression=zipfile.ZIP_STORED) -> Path:
    """A zip of `entries` in order (stored: deflating the 5 MB library each example is slow)."""
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return path


# -- raw bytes: truncation, bit flips, overwritten runs ------------------------------------------------


@st.composite
def damaged(draw, data: bytes) -> bytes:
    kind = draw(st.sampled_from(["truncate", "flip", "overwrite", "insert"]))
    data = bytearray(data)
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            # The central directory and headers sit at the ends: aim half the flips there.
            tail = draw(st.booleans())
            at = draw(st.integers(max(0, len(data) - 400) if tail else 0, len(data) - 1))
            data[at] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    at = draw(st.integers(0, len(data) - 1))
    run = draw(st.binary(min_size=1, max_size=64))
    if kind == "overwrite":
        data[at : at + len(run)] = run
    else:
        data[at:at] = run
    return bytes(data)


@fuzz(60)
@given(data=st.data())
def test_damaged_bytes(saved, tmp_path_factory, data):
    original = saved[0].read_bytes()
    path = tmp_path_factory.mktemp("bytes") / "damaged.sccpkg"
    path.write_bytes(data.draw(damaged(original)))
    result = check_load(path, saved)
    assert result == "ok" or "sccpkg" in result or "corrupted" in result or "manifest" in result, result


# -- members: extra, missing, renamed, path traversal ----------------------------------------------------

NASTY_NAMES = [
    "../x",
    "../../x",
    "/tmp/sparsecc-fuzz-abs",
    "..\\x",
    "model.so/../../x",
    "./model.so",
    "a/" * 30,
]


@fuzz(25)
@given(
    drop=st.sets(st.sampled_from([MANIFEST, "model.so", WEIGHTS]), max_size=3),
    rename=st.one_of(st.none(), st.sampled_from(NASTY_NAMES)),
    extra=st.lists(
        st.tuples(
            st.one_of(
                st.sampled_from([*NASTY_NAMES, MANIFEST, "model.so"]),
                st.text(st.characters(exclude_categories=["Cs"]), min_size=1),
            ),
            st.binary(max_size=32),
        ),
        max_size=3,
    ),
    order=st.randoms(use_true_random=False),
)
def test_member_changes(saved, members, tmp_path_factory, drop, rename, extra, order):
    work = tmp_path_factory.mktemp("members")
    entries = [(name, data) for name, data in members.items() if name not in drop]
    if rename is not None and entries:
        entries[-1] = (rename, entries[-1][1])
    entries += [(name.replace("\x00", "_"), data) for name, data in extra]
    order.shuffle(entries)
    path = zip_of(work / "changed.sccpkg", entries)
    result = check_load(path, saved)
    outside = [work.parent / "x", work.parent.parent / "x", Path("/tmp/sparsecc-fuzz-abs")]
    assert not [p for p in outside if p.exists()]
    # zipfile reads the last member of a name: the package is intact when those are the originals.
    final = dict(entries)
    intact = all(final.get(name) == members[name] for name in (MANIFEST, "model.so", WEIGHTS))
    if intact:
        assert result == "ok", result  # extra members are harmless
    else:
        assert result != "ok"


# -- sizes: zip bombs and lying central directories ----------------------------------------------------


def patch_central(data: bytes, name: bytes, offset: int, fmt: str, value: int) -> bytes:
    """Set one field of `name`'s central-directory record (offset from its signature; not the local header)."""
    at = data.index(b"PK\x01\x02")
    while at >= 0:
        name_len = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46 : at + 46 + name_len] == name:
            size = struct.calcsize(fmt)
            return data[: at + offset] + struct.pack(fmt, value) + data[at + offset + size :]
        at = data.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"{name!r} not in the central directory")


def patch_central_sizes(data: bytes, name: bytes, file_size: int) -> bytes:
    return patch_central(data, name, 24, "<I", file_size)  # the uncompressed size


@pytest.mark.parametrize(
    ("offset", "value", "needle"),
    [
        (6, 84, "zip file version 8.4"),  # version needed to extract: zipfile raises NotImplementedError
        (8, 0x1, "encrypted or with compression method"),  # flag bit 0: encrypted
        (8, 0x20, "encrypted or with compression method"),  # flag bit 5: patched data
        (10, 14, "compression method 14"),  # LZMA: sparsecc writes stored or deflated only
    ],
)
def test_central_directory_fields_sparsecc_never_writes(saved, tmp_path, offset, value, needle):
    path = tmp_path / "patched.sccpkg"
    path.write_bytes(patch_central(saved[0].read_bytes(), b"model.so", offset, "<H", value))
    assert needle in check_load(path, saved)


@pytest.mark.parametrize("member", [b"model.so", MANIFEST.encode()])
@pytest.mark.parametrize("size", [0, 1, 2**20, 2**32 - 1])
def test_lying_uncompressed_size_is_refused_before_reading(saved, tmp_path, member, size):
    path = tmp_path / "lying.sccpkg"
    path.write_bytes(patch_central_sizes(saved[0].read_bytes(), member, size))
    result = check_load(path, saved)
    # A manifest claiming more than it holds reads as itself (zipfile stops at the stream's end, CRC
    # checked); claiming less truncates it. The library's size must equal what the manifest declares.
    assert result != "ok" or (member == MANIFEST.encode() and size == 2**20), result
    if size == 2**32 - 1:
        assert f"declares {member.decode()} as {size} bytes uncompressed" in result and "limit" in result


def test_zip_bombs_are_refused_by_their_declared_size(saved, members, tmp_path):
    zeros = bytes(64 << 20)  # 64 MiB of zeros: ~64 KiB deflated
    library_bomb = zip_of(
        tmp_path / "lib.sccpkg", [(MANIFEST, members[MANIFEST]), ("model.so", zeros)], zipfile.ZIP_DEFLATED
    )
    assert library_bomb.stat().st_size < 1 << 20
    message = check_load(library_bomb, saved)
    assert f"model.so as {len(zeros)} bytes uncompressed" in message and "limit is" in message
    manifest_bomb = zip_of(
        tmp_path / "manifest.sccpkg",
        [(MANIFEST, b" " * (80 << 20) + b"{}"), ("model.so", members["model.so"])],
        zipfile.ZIP_DEFLATED,
    )
    message = check_load(manifest_bomb, saved)
    assert "declares manifest.json as" in message and f"the limit is {64 << 20} bytes" in message


# -- the manifest: not JSON, not an object, wrong types ---------------------------------------------------

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 2**40), st.floats(), st.text(max_size=8)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def paths_in(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths_in(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths_in(item, (*prefix, index))


def replaced(value, where, new):
    if not where:
        return new
    value = json.loads(json.dumps(value))
    holder = value
    for key in where[:-1]:
        holder = holder[key]
    holder[where[-1]] = new
    return value


@fuzz(30)
@given(data=st.data(), redigest=st.booleans())
def test_manifest_values(saved, members, tmp_path_factory, data, redigest):
    manifest = json.loads(members[MANIFEST])
    interesting = [p for p in paths_in(manifest) if not (p and p[0] in ("report", "versions", "spec"))]
    where = data.draw(st.sampled_from(interesting))
    new = data.draw(json_values)
    changed = replaced(manifest, where, new)
    if redigest and isinstance(changed, dict):  # as a buggy writer (or a hand edit) would leave it
        changed["manifest_sha256"] = manifest_digest(changed)
    path = zip_of(
        tmp_path_factory.mktemp("manifest") / "m.sccpkg",
        [(MANIFEST, json.dumps(changed).encode()), *others(members)],
    )
    result = check_load(path, saved, edited_manifest=redigest)
    harmless = changed == manifest or (redigest and where[:1] == ("target",) and where[1:] == ("dict",))
    assert result == "ok" or not harmless, result


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'"text"',
        b"3",
        b"null",
        b"[" * 100_000,
        b'{"format_version": 1}',
        b"1" * 5000,
    ],
)
def test_manifest_that_is_not_a_json_object(saved, members, tmp_path, text):
    path = zip_of(tmp_path / "m.sccpkg", [(MANIFEST, text), *others(members)])
    message = check_load(path, saved)
    assert "manifest" in message or "format version 1" in message, message


def test_extra_members_and_nasty_names_load_and_run(saved, members, tmp_path):
    entries = [
        *members.items(),
        ("../escape", b"x"),
        ("/tmp/sparsecc-fuzz-abs", b"x"),
        ("notes.txt", b"hello"),
    ]
    assert check_load(zip_of(tmp_path / "extra.sccpkg", entries), saved) == "ok"
    assert not (tmp_path.parent / "escape").exists() and not Path("/tmp/sparsecc-fuzz-abs").exists()


# -- inputs: wrong shapes, dtypes, names, missing, extra --------------------------------------------------

dtypes = st.sampled_from(["float32", "float64", "float16", "int64", "int32", "bool", "uint8", "complex64"])
shapes = st.lists(st.integers(0, 9), max_size=4).map(tuple)


@st.composite
def feeds(draw, spec):
    """Positional and keyword inputs: mostly a wrong shape, dtype or name, sometimes right."""
    shape = draw(st.one_of(st.just(spec.shape), shapes))
    dtype = draw(st.one_of(st.just(spec.dtype), dtypes))
    value = np.zeros(shape, dtype=dtype)
    value = draw(
        st.one_of(
            st.just(value),
            st.just(value.tolist()),
            st.sampled_from([None, "text", 3.5, b"bytes", {"a": 1}, [[1.0], [2.0, 3.0]]]),
        )
    )
    name = draw(st.one_of(st.just(spec.name), st.text(max_size=6)))
    how = draw(st.sampled_from(["positional", "keyword", "both", "none", "twice"]))
    if how == "positional":
        return (value,), {}
    if how == "keyword":
        return (), {name: value}
    if how == "both":
        return (value,), {name: value}
    if how == "twice":
        return (value, value), {}
    return (), {}


@pytest.fixture(scope="module")
def loaded(saved):
    return sparsecc.load(saved[0])


@fuzz(100)
@given(data=st.data())
def test_wrong_inputs(saved, loaded, data):
    _, x, expected = saved
    args, kwargs = data.draw(feeds(loaded.input_specs[0]))
    try:
        result = loaded(*args, **kwargs)
    except InputError as error:
        one_line(str(error))
        outcome("InputError")
        return
    outcome("accepted")  # then it must be exactly one input of the compiled shape and dtype
    given_value = np.asarray((list(args) + list(kwargs.values()))[0])
    assert given_value.shape == x.shape and given_value.dtype == x.dtype
    np.testing.assert_allclose(result, loaded(np.zeros_like(x)), rtol=0, atol=0)
    assert result.shape == expected.shape


def test_ragged_list_input_is_an_input_error(loaded):
    with pytest.raises(InputError):
        loaded([[1.0], [2.0, 3.0]])


# -- the CLI: `sparsecc run` on damaged artifacts and bad --input files -----------------------------------


def run_cli(*argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(list(argv))
    return code, err.getvalue()


@fuzz(25)
@given(data=st.data())
def test_cli_run_on_damaged_artifacts_and_inputs(saved, tmp_path_factory, data):
    path, x, _ = saved
    work = tmp_path_factory.mktemp("cli")
    package = path
    if data.draw(st.booleans()):
        package = work / "damaged.sccpkg"
        package.write_bytes(data.draw(damaged(path.read_bytes())))
    kind = data.draw(
        st.sampled_from(["ok", "shape", "dtype", "npz", "garbage", "truncated", "pickle", "missing"])
    )
    array = x if kind == "ok" else x[:1] if kind == "shape" else x.astype(np.float64)
    npy = work / "x.npy"
    np.save(npy, array)
    if kind == "npz":
        npy = work / "x.npz"
        np.savez(npy, x=x)
    elif kind == "garbage":
        npy.write_bytes(data.draw(st.binary(max_size=64)))
    elif kind == "truncated":
        npy.write_bytes(npy.read_bytes()[: data.draw(st.integers(0, 127))])
    elif kind == "pickle":
        np.save(npy, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif kind == "missing":
        npy = work / "nope.npy"
    name = data.draw(st.sampled_from(["x", "y", ""]))
    out = work / "out.npz"
    try:
        code, err = run_cli("run", str(package), "--input", f"{name}={npy}", "-o", str(out))
    except SparseccError:  # main() prints SparseccErrors; one escaping main is a bug
        raise
    lines = [line for line in err.splitlines() if line.strip()]
    outcome(f"exit {code}")
    if code == 0:  # the input was right, and the package undamaged or harmlessly damaged (a date, a comment)
        assert out.exists() and kind == "ok" and name == "x"
        np.testing.assert_array_equal(np.load(out)[sparsecc.load(package).output_specs[0].name], saved[2])
    else:
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), err
        assert not out.exists() and not list(work.glob(".out.npz.*"))


def test_cli_run_with_an_empty_npy_file(saved, tmp_path):
    empty = tmp_path / "x.npy"
    empty.write_bytes(b"")
    code, err = run_cli("run", str(saved[0]), "--input", f"x={empty}", "-o", str(tmp_path / "out.npz"))
    assert code == 2 and "x.npy" in err and not (tmp_path / "out.npz").exists()

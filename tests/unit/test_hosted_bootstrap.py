"""The stick's bootstrap copies into RAM exactly the files the build recorded, each checked against its hash
(a small tree stands for the bundle; the real one is run by tests/hosted/test_bundle.py)."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from borgusb.hosted import bootstrap
from borgusb.hosted.bootstrap import Refused, copy_checked, site_of
from borgusb.hosted.bundle import boot_script, manifest


def bundle(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    hosted = tmp_path / "hosted"
    files = {
        "site-cp311/borgusb/__init__.py": b"",
        "site-cp311/borgusb/hosted/__main__.py": b"print('hello')\n",
        "site-cp311/cryptography/_rust.abi3.so": bytes(range(256)) * 64,
    }
    for name, data in files.items():
        (hosted / name).parent.mkdir(parents=True, exist_ok=True)
        (hosted / name).write_bytes(data)
    return hosted, manifest(hosted)


def copied(dest: Path) -> dict[str, bytes]:
    return {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()}


def test_the_build_embeds_the_hash_of_every_file_in_the_bootstrap(tmp_path):
    hosted, files = bundle(tmp_path)
    assert set(files) == {p.relative_to(hosted).as_posix() for p in hosted.rglob("*") if p.is_file()}
    script = boot_script(files)
    found = [
        n for n in ast.parse(script).body if isinstance(n, ast.AnnAssign) and getattr(n.target, "id", "") == "MANIFEST"
    ]
    assert len(found) == 1 and ast.literal_eval(found[0].value) == files
    assert script.count("MANIFEST: dict[str, str] = {}") == 0


def test_a_clean_bundle_is_copied_whole_and_nothing_else(tmp_path):
    hosted, files = bundle(tmp_path)
    (hosted / "site-cp311" / "sitecustomize.py").write_text("raise SystemExit('ran')\n")  # added on the stick
    dest = tmp_path / "ram"
    dest.mkdir()
    copy_checked(str(hosted), str(dest), files, "site-cp311")
    original = {name: (hosted / name).read_bytes() for name in files}
    assert copied(dest) == original


@pytest.mark.parametrize("change", ["modified", "missing", "symlink", "directory"])
def test_a_changed_file_stops_the_copy_with_its_name(tmp_path, change):
    hosted, files = bundle(tmp_path)
    target = hosted / "site-cp311" / "borgusb" / "hosted" / "__main__.py"
    if change == "modified":
        target.write_bytes(b"import os; os.system('id')\n")
        expect = "differs from the file the image build recorded"
    elif change == "missing":
        target.unlink()
        expect = "is missing on the stick"
    elif change == "symlink":
        (tmp_path / "evil.py").write_bytes(target.read_bytes())
        target.unlink()
        target.symlink_to(tmp_path / "evil.py")
        expect = "cannot read"
    else:
        target.unlink()
        target.mkdir()
        expect = "not a regular file"
    dest = tmp_path / "ram"
    dest.mkdir()
    with pytest.raises(Refused, match=expect) as refused:
        copy_checked(str(hosted), str(dest), files, "site-cp311")
    assert "hosted/site-cp311/borgusb/hosted/__main__.py" in str(refused.value)
    assert "borgusb/hosted/__main__.py" not in copied(dest).keys()


def test_a_manifest_path_outside_the_bundle_is_refused(tmp_path):
    hosted, files = bundle(tmp_path)
    dest = tmp_path / "ram"
    dest.mkdir()
    with pytest.raises(Refused, match="not a path inside the bundle"):
        copy_checked(str(hosted), str(dest), {**files, "site-cp311/../../escape": "0" * 64}, "site-cp311")


def test_another_python_is_told_what_the_stick_carries():
    files = {"site-cp311/a.py": "0" * 64}
    assert site_of(files, "cp311") == "site-cp311"
    with pytest.raises(Refused, match="python3 is cp313; the stick carries BorgUSB for: cp311"):
        site_of(files, "cp313")


def test_the_bootstrap_needs_nothing_but_the_standard_library():
    tree = ast.parse(Path(bootstrap.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"__future__", "ctypes", "hashlib", "os", "shutil", "stat", "sys", "tempfile"}, imported
    assert not any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree))
    assert os.path.basename(bootstrap.__file__) == "bootstrap.py"

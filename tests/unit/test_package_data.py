"""Every cell page's templates and scripts ship in the wheel: the image and hosted mode install the wheel,
not the checkout, and a conduit whose cell page lacks its files cannot start there."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_cell_packages_templates_and_static_files_are_package_data() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for folder in sorted((ROOT / "borgusb").glob("**/templates")) + sorted((ROOT / "borgusb").glob("**/static")):
        package = ".".join(folder.parent.relative_to(ROOT).parts)
        patterns = declared.get(package, [])
        assert any(p.startswith(folder.name + "/") for p in patterns), f"{package}: {folder.name}/ not in package-data"

"""Builds the package with the FlatBuffers reader generated from the gateway's schema.

flatc --python writes modules that import each other as `gw.uplink.fb.X` (the schema's namespace);
they go into gwbatch/_generated with those imports made relative to it, so that the package owns no
top-level `gw` module.
"""
import os
import pathlib
import re
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = pathlib.Path(__file__).resolve().parent
SCHEMA = pathlib.Path(os.environ.get("GW_BATCH_SCHEMA", HERE / ".." / ".." / "batch.fbs")).resolve()


def generate(package_dir: pathlib.Path) -> None:
    if not SCHEMA.is_file():
        raise SystemExit(f"edge-gateway-batch: the schema {SCHEMA} is missing (build from the source tree)")
    flatc = shutil.which("flatc")
    if flatc is None:
        raise SystemExit("edge-gateway-batch: flatc is not on the PATH (Debian: apt install flatbuffers-compiler)")
    out = package_dir / "_generated"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    subprocess.run([flatc, "--python", "-o", str(out), str(SCHEMA)], check=True)
    for path in out.rglob("*.py"):
        text = path.read_text()
        path.write_text(re.sub(r"\bfrom gw\.uplink\.fb\.", "from gwbatch._generated.gw.uplink.fb.", text))
    (out / "__init__.py").write_text("")


class BuildWithSchema(build_py):
    def run(self):
        super().run()
        generate(pathlib.Path(self.build_lib) / "gwbatch")


setup(cmdclass={"build_py": BuildWithSchema})

"""The native data path (media._native), built by ``pip install -e .`` where it can be.

Everything else about the package is in pyproject.toml. The extension needs a C
compiler, Python's headers and OpenSSL 3's (Debian: gcc, python3-dev, libssl-dev);
where any is missing the build says why and goes on without it, and the relay runs
its Python path (media/datapath.py says which, once at start and in /metrics).
"""

import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

NATIVE = Extension(
    "media._native",
    sources=[
        "media/native/module.c",
        "media/native/wl_srtp.c",
        "media/native/wl_rtp.c",
        "media/native/wl_batch.c",
        "media/native/pump.c",
    ],
    depends=[
        "media/native/wl_srtp.h",
        "media/native/wl_rtp.h",
        "media/native/wl_batch.h",
        "media/native/objects.h",
    ],
    libraries=["crypto", "pthread"],
    extra_compile_args=["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden"],
)


class OptionalBuildExt(build_ext):
    """build_ext that warns instead of failing: the product runs without the extension."""

    skipped = False

    def run(self) -> None:
        try:
            super().run()
        except Exception as error:
            # (in place, the copy of what was not built fails too: said once)
            if not self.skipped:
                self._skipped(error)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as error:
            self._skipped(error)

    def _skipped(self, error: Exception) -> None:
        self.skipped = True
        print(
            f"WARNING: media._native not built ({error}); the relay will run its Python "
            "data path. Install gcc, python3-dev and libssl-dev, then pip install -e . again.",
            file=sys.stderr,
        )


setup(ext_modules=[NATIVE], cmdclass={"build_ext": OptionalBuildExt})

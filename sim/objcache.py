"""A compile cache for Verilator's runtime objects, run by make as Verilator's ``OBJCACHE`` hook.

Every Verilator build compiles the same four runtime sources (``verilated.cpp``,
``verilated_dpi.cpp``, ``verilated_vpi.cpp``, ``verilated_threads.cpp`` from the wheel's
``include`` folder) into its own build directory: 19 s of one core per build on this project's
machine, about a third of building a digits accelerator. This wrapper sits in front of the
compiler (``make OBJCACHE=<wrapper>`` makes every compile ``<wrapper> c++ ARGS...``) and keeps
those objects, with their ``-MMD`` dependency files, in a store shared by the builds. The key is
the whole compile command (the output's file name, not its directory), the compiler's resolved
path and its size and time stamp, and the contents of the source and of Verilator's
``verilated_config.h`` (its version), so a different flag, define (tracing), compiler or Verilator
never takes a stored object. Everything else (the design's own C++) goes to the compiler
untouched.

    python objcache.py STORE VERILATOR_INCLUDE CXX ARGS...

Run as a script by path (no package import: it starts once per compile). Stores are written
to a temporary name and renamed into place, so parallel builds never read half an object.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def _key(include: Path, cxx: str, args: list[str], out: str, source: Path) -> str:
    h = hashlib.sha256()
    compiler = shutil.which(cxx)
    st = os.stat(compiler) if compiler else None
    h.update(repr((os.path.realpath(compiler) if compiler else cxx,
                   st and (st.st_size, st.st_mtime_ns))).encode())
    h.update("\0".join(Path(a).name if a == out else a for a in args).encode())
    h.update(source.read_bytes())
    config = include / "verilated_config.h"
    h.update(config.read_bytes() if config.exists() else b"")
    return h.hexdigest()[:32]


def _cacheable(include: Path, args: list[str]) -> tuple[str, Path] | None:
    """(output, source) of a one-source ``-c -o OUT SRC`` compile of a runtime source."""
    if "-c" not in args or "-o" not in args or args.index("-o") + 1 >= len(args):
        return None
    out = args[args.index("-o") + 1]
    sources = [a for a in args if a.endswith(".cpp")]
    if len(sources) != 1:
        return None
    source = Path(sources[0])
    try:
        inside = source.resolve().parent == include.resolve()
    except OSError:
        return None
    return (out, source) if inside and out.endswith(".o") else None


def _store(src: Path, dst: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.")
    os.close(fd)
    shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, dst)


def main(argv: list[str]) -> int:
    store, include, cxx, args = Path(argv[0]), Path(argv[1]), argv[2], argv[3:]
    found = _cacheable(include, args)
    if found is None:
        return subprocess.call([cxx, *args])
    out, source = found
    dep = Path(out).with_suffix(".d")
    key = _key(include, cxx, args, out, source)
    obj_in, dep_in = store / f"{key}.o", store / f"{key}.d"
    if obj_in.exists() and (dep_in.exists() or "-MMD" not in args):
        shutil.copyfile(obj_in, out)
        if dep_in.exists():
            shutil.copyfile(dep_in, dep)
        return 0
    code = subprocess.call([cxx, *args])
    if code == 0:
        try:
            store.mkdir(parents=True, exist_ok=True)
            if "-MMD" in args and dep.exists():
                _store(dep, dep_in)
            _store(Path(out), obj_in)        # the object last: its presence means both
        except OSError:
            pass                             # a cache that cannot be written is only slower
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

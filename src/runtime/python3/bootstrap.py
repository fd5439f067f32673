# Stratus python3 runtime launcher (the command the worker starts; see src/runtime/runtime.cc).
# Runs stratus_runtime.py from the bytecode that runtime::installAssets() compiled next to it, so a
# cold start does not pay for compiling it (~2-6 ms); falls back to the source when there is no
# bytecode for this interpreter.
import sys


def _launch():
    here = __file__.rpartition("/")[0] or "."
    if sys.path and sys.path[0] == here:
        del sys.path[0]  # this directory: keep it off the handler's import path
    source = here + "/stratus_runtime.py"
    code = None
    try:
        with open(here + "/stratus_runtime.pyc", "rb") as f:
            data = f.read()
        if data[:4] == sys.modules["_frozen_importlib_external"].MAGIC_NUMBER:
            import marshal
            code = marshal.loads(memoryview(data)[16:])
    except (OSError, KeyError, ValueError, EOFError, TypeError):
        code = None
    if code is None:
        with open(source, "rb") as f:
            code = compile(f.read(), source, "exec")
    exec(code, {"__name__": "__main__", "__file__": source, "__builtins__": __builtins__})


_launch()

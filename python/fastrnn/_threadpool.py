"""fastrnn's thread pool as a threadpoolctl library (threadpoolctl >= 3.1).

`threadpoolctl.threadpool_info()` lists it (user_api "fastrnn") and
`threadpool_limits(n)` limits it, as for BLAS and OpenMP. The kernel module
exports `fastrnn_get_num_threads` / `fastrnn_set_num_threads` (csrc/threads.cpp)
for threadpoolctl to call through ctypes. Registered at `import fastrnn` when
threadpoolctl is installed; nothing happens otherwise.
"""


def register():
    try:
        import threadpoolctl
    except ImportError:
        return
    if not hasattr(threadpoolctl, "register"):      # before 3.1
        return

    class FastrnnController(threadpoolctl.LibController):
        user_api = "fastrnn"
        internal_api = "fastrnn"
        filename_prefixes = ("_core_",)
        check_symbols = ("fastrnn_get_num_threads", "fastrnn_set_num_threads")

        def get_num_threads(self):
            return self.dynlib.fastrnn_get_num_threads()

        def set_num_threads(self, num_threads):
            self.dynlib.fastrnn_set_num_threads(int(num_threads))

        def get_version(self):
            from . import __version__
            return __version__

    threadpoolctl.register(FastrnnController)

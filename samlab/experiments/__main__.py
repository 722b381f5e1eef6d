"""``python -m samlab.experiments``: the command line. An entry point that no module imports, so that the
package itself imports nothing above it: :func:`samlab.cluster.main` handles ``submit`` and ``status`` and
hands every other command (``list``, ``run``, ``table``) to :func:`samlab.runner.main`."""

from samlab.cluster import main

if __name__ == "__main__":   # run by ``python -m``; importing it (a documentation tool, a test) runs nothing
    raise SystemExit(main())

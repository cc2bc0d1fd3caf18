"""Entry point of the one-file binary: `contimg ...` without a virtualenv.

``freeze_support`` first: the engine's stage pool uses the spawn start method, whose
children re-run this executable and must become pool workers, not a second console.
"""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from contimg_console.cli import main

    sys.exit(main())

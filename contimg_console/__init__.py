"""contimg: the operations console of the DSA-110 continuum imaging pipeline."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("contimg-console")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+src"

API_VERSION = "v1"
SERVICE_NAME = "contimg"

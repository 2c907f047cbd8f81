"""vggbench: the VGG lesson, from Gluon blocks to deployment numbers."""

from vggbench.errors import VggbenchError

__version__ = "0.1.0"
__all__ = ["VggbenchError", "__version__"]

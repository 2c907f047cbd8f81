"""What this machine and its software are: the one mxnet import (``mxnet``), CPU facts and peaks
(``cpu``), load and clocks while measuring (``load``), GPUs (``gpu``), native libraries and installed
distributions (``libraries``), and the environment recorded with every result (``environment``).
Imports no stage."""

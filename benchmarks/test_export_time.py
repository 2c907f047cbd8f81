"""Export time: hybridized Gluon net -> MXNet symbol/params -> cleaned, checked ONNX (``vggbench.export.onnx``).

Most of it is mx.onnx copying the 4096x4096 dense weights, so the width ratio matters little.
"""

from __future__ import annotations

import pytest


@pytest.mark.benchmark(min_rounds=3, max_time=0.5)
def test_export(benchmark, suite, tmp_path):
    from vggbench.export import onnx as export
    from vggbench.models import get_model
    from vggbench.platform.mxnet import import_mxnet

    mx = import_mxnet()
    case = suite.cases[0]
    mx.random.seed(0)
    net = get_model(case.model, width_ratio=case.width_ratio)
    net.initialize(mx.init.Xavier())

    def export_both():
        export.export_mxnet(net, tmp_path, case.input_size)
        return export.export_onnx(tmp_path, case.input_size)

    benchmark.group = "export"
    benchmark.extra_info.update(suite.info(case, kind="export", backend="mxnet->onnx", precision="fp32",
                                           batch_size=None))
    onnx_info = benchmark(export_both)
    assert onnx_info["nodes"] > 0 and (tmp_path / export.ONNX_FILE).is_file()

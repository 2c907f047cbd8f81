"""One training step of the project's own loop (``vggbench.train.train_epoch`` over one batch).

Forward, loss, backward and the SGD update on a hybridized network, on real Fashion-MNIST
images; ``mx.nd.waitall()`` makes sure the (asynchronous) weight update is finished in the round.
"""

from __future__ import annotations

import pytest


@pytest.mark.benchmark(min_rounds=5)
def test_train_step(benchmark, suite, case, test_images):
    from vggbench import data, train
    from vggbench._mxnet import import_mxnet

    mx = import_mxnet()
    gluon = mx.gluon

    recipe = train.Recipe(model=case.model, input_size=case.input_size, width_ratio=case.width_ratio,
                          batch_size=suite.batch_size)
    contexts = [mx.cpu()]
    net = train.build_network(recipe, contexts)
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": recipe.lr})
    images, labels = test_images
    one_batch = [(mx.nd.array(data.preprocess(images[:suite.batch_size], case.input_size)),
                  mx.nd.array(labels[:suite.batch_size]))]

    def step():
        stats = train.train_epoch(net, trainer, one_batch, contexts, 1, 1, recipe.lr, progress=False)
        mx.nd.waitall()
        return stats

    benchmark.group = f"training step {case.id} batch {suite.batch_size}"
    benchmark.extra_info.update(suite.info(case, kind="train_step", backend="mxnet-hybrid", precision="fp32",
                                           images_per_round=suite.batch_size))
    stats = benchmark(step)
    assert stats["train_images"] == suite.batch_size

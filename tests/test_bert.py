"""The bert family and conversion of Hugging Face BERT classifiers (built locally)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

import onefit
from onefit.metrics import count
from onefit.metrics.runtimes.onnx_runtime import export_onnx
from onefit.search.supernet import supernet_search
from onefit.supernets.bert import ElasticBert
from tests.conftest import pretrain, sandwich_fine_tune

transformers = pytest.importorskip("transformers")

LENGTH = 12
VOCAB = 20


def _hf_bert(seed: int = 0, num_labels: int = 3) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=32, num_labels=num_labels,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    return transformers.BertForSequenceClassification(config).eval()


def _ids(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (n, LENGTH), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_bert_converts_exactly_and_sub_networks_extract() -> None:
    model = _hf_bert()
    ids = _ids()
    net = onefit.elasticize(model, ids, verbose=False).eval()
    assert isinstance(net, ElasticBert) and net.spec is not None and net.spec["name"] == "bert"
    assert net.space["d"].choices == (2, 3, 4) and max(net.space["m.0"].choices) == 128
    assert (net(ids) - model(input_ids=ids).logits).abs().max() <= 1e-5
    model64 = _hf_bert().double()
    net64 = onefit.elasticize(model64, ids, verbose=False).eval()
    assert (net64(ids) - model64(input_ids=ids).logits).abs().max() <= 1e-9
    rows = {row.layer: row for row in net.report.rows}
    assert "heads: h.2" in rows["bert.encoder.layer.2.attention.self"].elastic
    assert rows["classifier"].static_because == "out: model output"
    for config in [net.space.smallest(), *net.space.sample_many(20, seed=0)]:
        net.set_active(config)
        static = net.extract(config)
        assert (static(ids) - net(ids)).abs().max() <= 1e-5
        assert net.cost(config) == count(static, (LENGTH,), dtype=torch.long)
    assert net.macs(net.space.smallest()) < net.macs(net.space.largest()) / 3


@torch.no_grad()
def test_bert_sub_network_exports_to_onnx_and_pickles() -> None:
    import onnxruntime

    net = onefit.elasticize(_hf_bert(), _ids(), verbose=False).eval()
    static = net.extract(net.space.sample(seed=4))
    ids = _ids(n=3, seed=5)
    session = onnxruntime.InferenceSession(export_onnx(static, ids, dynamic_batch=True))
    (logits,) = session.run(None, {"input": ids.numpy()})
    assert np.abs(logits - static(ids).numpy()).max() <= 1e-4
    clone = pickle.loads(pickle.dumps(static))
    assert torch.equal(clone(ids), static(ids))


def test_bert_rejects_images_and_wrong_lengths() -> None:
    net = onefit.create_supernet("bert", num_classes=2, vocab_size=VOCAB, image_size=LENGTH)
    with pytest.raises(ValueError, match="token ids"):
        net(torch.zeros(2, LENGTH))
    with pytest.raises(ValueError, match="token ids"):
        net(torch.zeros(2, LENGTH + 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"token ids must lie in 0\.\.19"):
        net(torch.full((2, LENGTH), VOCAB))
    with pytest.raises(ValueError, match="in_channels=1"):
        onefit.create_supernet("bert", in_channels=3)
    with pytest.raises(ValueError, match="example_input is token ids"):
        onefit.elasticize(_hf_bert(), torch.zeros(2, 3, 8, 8))


def _counting_task(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Which of the tokens 1, 2, 3 occurs most often (ties: the smaller): 3 classes."""
    ids = torch.randint(0, VOCAB, (n, LENGTH), generator=torch.Generator().manual_seed(seed))
    counts = torch.stack([(ids == t).sum(1) for t in (1, 2, 3)], dim=1)
    return ids, counts.argmax(dim=1)  # argmax takes the first maximum


def test_sandwich_fine_tuning_raises_the_smallest_bert(tmp_path) -> None:
    """InstaTune's recipe on a BERT: convert a trained model, fine-tune with the sandwich rule."""
    ids, labels = _counting_task(3000, seed=0)
    data = onefit.data.from_tokens(ids, labels, val_fraction=0.2, seed=0, name="counting")
    x_train, y_train = data.train_tensors()
    generator = torch.Generator().manual_seed(0)

    def epoch() -> list[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(y_train), generator=generator).split(64)
        return [(x_train[idx], y_train[idx]) for idx in order]

    model = pretrain(_hf_bert(), epoch, epochs=4, lr=1e-3)
    net = onefit.elasticize(model, x_train[:2], verbose=False)
    before, after = sandwich_fine_tune(net, data, tmp_path, lr=1e-3, weight_decay=0.01,
                                       epochs=3)  # fmt: skip
    assert after["smallest"] >= before["smallest"] + 0.10, (before, after)
    assert after["largest"] >= before["largest"] - 0.05, (before, after)
    tuned = onefit.load_supernet(tmp_path / "run")
    # And it searches like any supernet: accuracy against MACs on the token data.
    found = supernet_search(tuned, data, {"accuracy": "max", "macs": "min"},
                            strategy="random", budget=6, seed=0)  # fmt: skip
    assert len(found.history) == 6 and all(e.ok for e in found.history)
    assert found.pareto and all(0.3 < e.metrics["accuracy"] <= 1 for e in found.pareto)

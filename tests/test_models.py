import pytest

from unsplit_tf.models import cifar_net, mnist_net, paper_depths, reference_net
from unsplit_tf.split import counted_layers, split_model


def test_parameter_counts_equal_the_originals():
    assert mnist_net().count_params() == 45_278
    assert cifar_net().count_params() == 1_609_546


def test_mnist_net_layers_follow_the_papers_depth_count():
    names = [layer.name for layer in counted_layers(mnist_net())]
    assert names == ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "dense1", "relu3", "dense2", "relu4", "logits"]


def test_cifar_net_has_sigmoid_after_the_512_unit_layer():
    model = cifar_net()
    names = [layer.name for layer in counted_layers(model)]
    assert names[:5] == ["block1_conv1", "block1_relu1", "block1_conv2", "block1_relu2", "block1_pool"]
    assert names[-3:] == ["dense1", "sigmoid", "logits"]
    assert model.get_layer("dense1").units == 512
    assert model.get_layer("sigmoid").get_config()["activation"] == "sigmoid"


@pytest.mark.parametrize(
    ("dataset", "depth", "cut", "shape"),
    [
        ("f_mnist", 1, "relu1", (24, 24, 8)),
        ("f_mnist", 2, "pool1", (12, 12, 8)),
        ("f_mnist", 5, "pool2", (4, 4, 16)),
        ("mnist", 6, "dense1", (120,)),  # depth 6 puts the first dense layer on the client
        ("cifar", 4, "block1_pool", (16, 16, 64)),
        ("cifar", 8, "block2_relu2", (16, 16, 128)),
    ],
)
def test_paper_depths_cut_where_the_authors_code_cuts(dataset, depth, cut, shape):
    split = split_model(reference_net(dataset), depth=depth)
    assert split.cut_layer == cut
    assert tuple(split.client.output.shape[1:]) == shape


def test_paper_depth_ranges():
    assert list(paper_depths("fashion_mnist")) == [1, 2, 3, 4, 5, 6]
    assert list(paper_depths("cifar10")) == list(range(1, 9))


def test_unknown_dataset_names_the_choices():
    with pytest.raises(ValueError, match="f_mnist"):
        reference_net("fmnst")

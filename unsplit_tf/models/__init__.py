"""Model builders: the paper's reference nets (and more architectures beside them)."""

from unsplit_tf.models.reference import PAPER_DEPTHS, cifar_net, mnist_net, paper_depths, reference_net

__all__ = ["PAPER_DEPTHS", "cifar_net", "mnist_net", "paper_depths", "reference_net"]

from unsplit_tf.models.resnet import block_output, resnet20

__all__ += ["block_output", "resnet20"]

"""The papers' numbers, in one place: what the pages, the tests and the README set the lab's measurements beside.

LeCun, Bottou, Bengio & Haffner (1998), "Gradient-based learning applied to document recognition";
Krizhevsky, Sutskever & Hinton (2012), "ImageNet classification with deep convolutional neural networks".
"""

from __future__ import annotations

# LeNet-5, Section II-B: trainable parameters and connections per layer.
PAPER_LENET5_LAYERS = {
    "C1": (156, 122_304),
    "S2": (12, 5_880),
    "C3": (1_516, 151_600),
    "S4": (32, 2_000),
    "C5": (48_120, 48_120),
    "F6": (10_164, 10_164),
}
PAPER_LENET5_PARAMS = 60_000  # "LeNet-5 ... contains ... about 60,000 free parameters" (Section II-B; exactly 60,000 here)

# LeNet-5's test error on the official MNIST test set (10,000 digits), percent (Section III-C, Figure 9).
PAPER_LENET5_ERRORS = {
    "LeNet-5": 0.95,
    "LeNet-5, trained on distorted digits": 0.8,
}

# Section 2 and 3 of the paper (the counts are stated in the abstract and Section 3.5 / Figure 2).
PAPER_ALEXNET = {
    "params": 60_000_000,
    "neurons": 650_000,
    "connections": 630_000_000,
    # "The network's input is 150,528-dimensional, and the number of neurons in the network's remaining layers is
    # given by 253,440-186,624-64,896-64,896-43,264-4096-4096-1000." (253,440 is generally read as a typo for
    # 55*55*96 = 290,400; 186,624 = 27*27*256 is conv2 before pooling.)
    "neurons_per_layer": {"conv1": 253_440, "conv2": 186_624, "conv3": 64_896, "conv4": 64_896, "conv5": 43_264,
                          "fc6": 4096, "fc7": 4096, "fc8": 1000},
    "ilsvrc2010_test": {"top1_error": 37.5, "top5_error": 17.0},
    "ilsvrc2012_val_one_cnn": {"top1_error": 40.7, "top5_error": 18.2},
}

# Figure 1: a four-layer CNN with ReLUs reaches 25 % training error on CIFAR-10 six times faster than with tanh.
PAPER_RELU_TANH = {"target_train_error": 25.0, "speedup": 6.0}

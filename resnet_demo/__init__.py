"""He et al. 2015's CIFAR-10 ResNets: train, load, evaluate, explain and look inside them.

The subpackages are the layers, from the bottom up: base, nets, data, store, training, interpret, server, then
app (the Streamlit app) and cli (the command line) on top. A subpackage imports only from those below it
(tests/test_layers.py); everything below interpret runs headless with torch, torchvision and numpy alone.
"""
__version__ = "0.1.0"

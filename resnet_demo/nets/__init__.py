"""The paper's facts (Table 6, the class names, the normalisation) and its networks: the 6n+2-layer CIFAR
ResNets and their plain twins, and a trained network's probabilities and top-k.

Imports: torch, numpy and resnet_demo.base.
"""

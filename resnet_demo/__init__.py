"""He et al. 2015's CIFAR-10 ResNets: train, load, evaluate and explain them (core: torch, torchvision, numpy).

The Streamlit app lives in resnet_demo.app and Captum in resnet_demo.explain; nothing here imports either.
"""
__version__ = "0.1.0"

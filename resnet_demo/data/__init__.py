"""Images in and out: CIFAR-10 on disk (cifar), its download, the built-in subset, the GPU-resident training
loader (loader), an uploaded image turned into a network input (images) and the shipped test images (mosaic,
testimages).

Imports: torch, torchvision, numpy, Pillow and resnet_demo.base and .nets.
"""

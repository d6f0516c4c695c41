"""Reading a trained network: its activations and each block's F(x) (anatomy), one block removed at a time
(knockout) and Captum's attributions (explain).

Imports: torch, numpy, Captum (only here and in the app) and resnet_demo.base, .nets, .data and .store.
"""

"""Reading a trained network: its activations and each block's F(x) (anatomy), one block removed at a time
(knockout), Captum's attributions (explain), and fooling it: Captum's FGSM and PGD (attacks) and the table of
accuracy under attack (robustness).

Imports: torch, numpy, Captum (only here and in the app) and resnet_demo.base, .nets, .data and .store.
"""

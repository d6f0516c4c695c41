"""Training: the recipes and their lr schedules, one settings record (config), which data a run trains on
(sources), the loop (train), its step (eager, or captured as a CUDA graph), resumable checkpoints, DDP, and a
job's memory need (budget).

Imports: torch, numpy, tqdm and resnet_demo.base, .nets, .data and .store.
"""

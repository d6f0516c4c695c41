"""Small helpers every layer uses: files that are never half-written (storage) and device, precision and hardware
naming (device), random weights a seed fixes whatever other threads do (seeding), and the test seam that kills a
process at a named moment (faults).

Imports: the standard library, numpy and torch only; nothing of resnet_demo.
"""

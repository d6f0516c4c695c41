"""What is kept on disk about a trained network: the model file (weights), weights/manifest.json, a run's
event history (events), test-set evaluations and predictions (evaluate), every loadable model (registry), its
export to safetensors or ONNX (export), and shipping a run into weights/ (ship).

Imports: torch, numpy, safetensors and resnet_demo.base, .nets and .data; onnx only inside the export function.
"""

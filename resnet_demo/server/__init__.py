"""The server's side of training: one background training job per server (jobs) and one reading of it per
second shared by every tab (watch).

Imports: the standard library and resnet_demo.base, .nets, .data, .store and .training; never Streamlit.
"""
